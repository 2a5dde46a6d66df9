"""The api service's tables live in schema quorum_api."""

from shared.db import make_base
from shared.events.tables import inbox_table, outbox_table

Base = make_base("api")
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
