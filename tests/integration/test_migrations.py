"""Every service's Alembic history upgrades from an empty database and downgrades cleanly back to nothing."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from shared.config import SERVICES
from shared.db import asyncpg_dsn, schema_for
from shared.embedded import create_database
from shared.migrations import downgrade, upgrade
from tests.conftest import _drop_database, _with_database


@pytest.fixture
def fresh_database(infrastructure: dict[str, str]):  # noqa: ANN201
    name = f"quorum_migrate_{secrets.token_hex(4)}"
    create_database(infrastructure["admin_url"], name)
    yield _with_database(infrastructure["admin_url"], name)
    _drop_database(infrastructure["admin_url"], name)


async def _schema_contents(url: str, schema: str) -> dict[str, set[str]]:
    """Tables, sequences, views, indexes and types that live in `schema`, apart from Alembic's own table."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        relations = await conn.fetch(
            "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1", schema)
        types = await conn.fetch(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0", schema)
        version = None
        if any(r["relname"] == "alembic_version" for r in relations):
            version = await conn.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')
    finally:
        await conn.close()
    own = {"alembic_version", "alembic_version_pkc"}
    contents: dict[str, set[str]] = {"relations": {f"{r['relname']}:{r['relkind']}" for r in relations
                                                   if r["relname"] not in own},
                                     "types": {t["typname"] for t in types}}
    contents["version"] = {version} if version else set()
    return contents


@pytest.mark.parametrize("service", SERVICES)
async def test_upgrade_from_empty_then_downgrade_to_base_then_upgrade_again(service: str, fresh_database: str) -> None:
    schema = schema_for(service)
    await asyncio.to_thread(upgrade, service, fresh_database)
    at_head = await _schema_contents(fresh_database, schema)
    tables = {r.split(":")[0] for r in at_head["relations"] if r.endswith(":r")}
    assert {"outbox", "inbox"} <= tables, f"{service} at head lacks the event tables: {sorted(tables)}"
    assert at_head["version"], f"{service} recorded no Alembic version at head"

    await asyncio.to_thread(downgrade, service, fresh_database, "base")
    at_base = await _schema_contents(fresh_database, schema)
    assert at_base["relations"] == set(), f"{service} downgrade left objects behind: {sorted(at_base['relations'])}"
    assert at_base["types"] == set(), f"{service} downgrade left types behind: {sorted(at_base['types'])}"
    assert at_base["version"] == set()

    await asyncio.to_thread(upgrade, service, fresh_database)
    again = await _schema_contents(fresh_database, schema)
    assert again == at_head, f"{service} re-upgrade differs from the first upgrade"


async def test_services_never_touch_each_others_schema(fresh_database: str) -> None:
    await asyncio.to_thread(upgrade, "worker", fresh_database)
    for other in ("api", "consensus"):
        contents = await _schema_contents(fresh_database, schema_for(other))
        assert contents["relations"] == set() and contents["version"] == set()
