"""The consensus service's tables live in schema quorum_consensus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from shared.db import make_base
from shared.events.tables import inbox_table, outbox_table
from shared.ping import ping_table

Base = make_base("consensus")
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
received_pings = ping_table(Base.metadata)

if TYPE_CHECKING:
    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.expression import Executable


async def row_slices(session: AsyncSession, statement: Executable, size: int = 2000) -> AsyncIterator[Sequence[Row]]:
    """The rows of a large read (a refit's labels, predictions, current results) `size` at a time, from a
    server-side cursor. Fetching each slice is a real await, and a caller that handles each slice before asking
    for the next keeps every stretch of CPU short: the event loop serves submissions in between instead of
    stalling while tens of thousands of rows are decoded and reshaped at once."""
    result = await session.stream(statement.execution_options(yield_per=size))
    async for part in result.partitions():
        yield part


async def rows_in_slices(session: AsyncSession, statement: Executable, size: int = 2000) -> list[Row]:
    """All rows of `row_slices`, for reads whose rows need no further work."""
    rows: list[Row] = []
    async for part in row_slices(session, statement, size):
        rows.extend(part)
    return rows
