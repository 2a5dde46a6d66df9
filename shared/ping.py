"""The `system.ping` proof of the event path: api publishes, every other service records what it received."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import NotFound
from shared.events.envelope import Envelope


def ping_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "received_pings", metadata,
        sa.Column("event_id", sa.String(26), primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("producer", sa.String(50), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("times_applied", sa.Integer, nullable=False, server_default="1"),
    )


def create_ping_table(op, schema: str) -> None:  # noqa: ANN001
    op.create_table(
        "received_pings",
        sa.Column("event_id", sa.String(26), primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("producer", sa.String(50), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("times_applied", sa.Integer, nullable=False, server_default="1"),
        schema=schema,
    )


def ping_handler(table: sa.Table):  # noqa: ANN201
    async def record_ping(session: AsyncSession, envelope: Envelope) -> None:
        payload = envelope.typed_payload()
        # times_applied makes a double application visible; the inbox should keep it at 1.
        stmt = pg_insert(table).values(
            event_id=envelope.id, message=payload.message, producer=envelope.producer,
            occurred_at=envelope.occurred_at)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.event_id],
                                          set_={"times_applied": table.c.times_applied + 1})
        await session.execute(stmt)

    return record_ping


def ping_router(table: sa.Table) -> APIRouter:
    router = APIRouter(prefix="/system", tags=["system"])

    from shared.auth.dependencies import require
    from shared.auth.principal import Role

    @router.get("/pings/{event_id}", summary="Whether this service has received a system.ping event",
                dependencies=[require("system.ping.read", roles={Role.ORG_ADMIN})])
    async def get_ping(event_id: str, request: Request) -> dict:
        ctx = request.app.state.ctx
        async with ctx.session_factory() as session:
            row = (await session.execute(sa.select(table).where(table.c.event_id == event_id))).first()
        if row is None:
            raise NotFound(f"no system.ping {event_id!r} received by {ctx.name} yet")
        return {"event_id": row.event_id, "message": row.message, "producer": row.producer,
                "occurred_at": row.occurred_at, "received_at": row.received_at,
                "times_applied": row.times_applied, "service": ctx.name}

    return router
