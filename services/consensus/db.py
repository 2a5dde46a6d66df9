"""The consensus service's tables live in schema quorum_consensus."""

from shared.db import make_base
from shared.events.tables import inbox_table, outbox_table
from shared.ping import ping_table

Base = make_base("consensus")
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
received_pings = ping_table(Base.metadata)
