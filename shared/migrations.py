"""One Alembic history per service, each in its own schema; `quorum migrate` applies them all."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.config import SERVICES
from shared.db import async_url, schema_for

_SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


def alembic_config(service: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def downgrade(service: str, database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service, database_url), revision)


def upgrade_all(database_url: str) -> None:
    for service in SERVICES:
        upgrade(service, database_url)


def run_env(context) -> None:  # noqa: ANN001 - alembic's context proxy
    """Body of every service's migrations/env.py (online mode only: we always have a database)."""
    cfg = context.config
    service = cfg.attributes["service"]
    schema = schema_for(service)

    def do_run(connection) -> None:  # noqa: ANN001
        context.configure(connection=connection, target_metadata=None, version_table_schema=schema,
                          include_schemas=True, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(async_url(cfg.attributes["database_url"]), poolclass=pool.NullPool)
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.commit()
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(run())
