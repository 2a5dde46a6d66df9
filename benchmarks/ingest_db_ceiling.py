"""The database's ceiling for bulk import: COPY alone, with nothing of Quorum's pipeline in front of it.

    .venv/bin/python benchmarks/ingest_db_ceiling.py [--n 100000] [--chunk 1000] [--payload-bytes 1500]

Pre-generates the rows one import of `--n` tasks writes (a task row with a `--payload-bytes` ciphertext, its
wrapped data-key row), then times only the per-chunk transactions the importer runs on a file without duplicates
(savepoint, COPY data keys, COPY tasks, asynchronous commit; duplicates would be looked up only once the unique
index refused the COPY) against PostgreSQL on 127.0.0.1, in a throwaway database migrated to the real schema. Variants strip parts of the schema to show where the time goes:

- `a key per task`: tasks (time-ordered UUIDv7 primary key as the importer makes them, unique (project, content
  hash), (project, created_at, id), import id, the statement-level check that the project exists) + one
  data_keys row (primary key, scope, live-KEK partial index) per task, as with `QUORUM_IMPORT_TASKS_PER_DATA_KEY=1`;
- `one key per chunk`: the same task rows, one data-key row per chunk (the default 64 tasks per key is close);
- `tasks only, no secondary indexes or project check`: the least a task row can cost with per-task rows at all.

Rates are tasks per second of wall time; the issue's peer figure (Label Studio, ~5,000 tasks/s here) puts
them in proportion. No Python work per row is timed: this is what PostgreSQL itself accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from services.api.imports.pipeline import task_uuid  # noqa: E402
from shared.embedded import create_database  # noqa: E402
from shared.migrations import upgrade_all  # noqa: E402

SCHEMA = "quorum_api"
TASK_COLUMNS = ["id", "project_id", "org_id", "schema_version", "content_hash", "key_id", "data_enc",
                "original_key_id", "original_enc", "pii_counts", "has_predictions", "import_id", "row_number",
                "created_at"]
KEY_COLUMNS = ["id", "scope", "kek_version", "wrapped", "created_at"]
VARIANTS = ("a key per task", "one key per chunk", "tasks only, no secondary indexes or project check")


async def _insert_defaults(conn: asyncpg.Connection, table: str, values: dict) -> None:
    """A row with `values` and a plausible value for every other NOT NULL column without a default."""
    columns = await conn.fetch(
        "SELECT column_name, is_nullable, column_default, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2", SCHEMA, table)
    names, params = [], []
    for c in columns:
        name = c["column_name"]
        if name in values:
            names.append(name)
            params.append(values[name])
        elif c["is_nullable"] == "NO" and c["column_default"] is None:
            kind = c["data_type"]
            value = ({"uuid": uuid.uuid4(), "integer": 1, "bigint": 1, "boolean": False, "jsonb": "{}",
                      "bytea": b"x"}.get(kind, "x"))
            names.append(name)
            params.append(datetime.now(UTC) if "timestamp" in kind else value)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(names)))
    await conn.execute(f"INSERT INTO {SCHEMA}.{table} ({', '.join(names)}) VALUES ({placeholders})", *params)


async def _prepare(conn: asyncpg.Connection, variant: str) -> tuple[uuid.UUID, uuid.UUID]:
    org, project = uuid.uuid4(), uuid.uuid4()
    await _insert_defaults(conn, "organizations", {"id": org, "name": "bench", "slug": f"b-{secrets.token_hex(4)}"})
    await _insert_defaults(conn, "projects", {"id": project, "org_id": org})
    if variant == VARIANTS[2]:
        for (name,) in await conn.fetch("SELECT conname FROM pg_constraint WHERE conrelid = 'quorum_api.tasks'::regclass "
                                        "AND contype = 'f'"):
            await conn.execute(f"ALTER TABLE {SCHEMA}.tasks DROP CONSTRAINT {name}")
        for (name,) in await conn.fetch("SELECT tgname FROM pg_trigger WHERE tgrelid = 'quorum_api.tasks'::regclass "
                                        "AND NOT tgisinternal"):
            await conn.execute(f"DROP TRIGGER {name} ON {SCHEMA}.tasks")
        for index in ("ix_tasks_project_created", "ix_tasks_import"):
            await conn.execute(f"DROP INDEX {SCHEMA}.{index}")
    return org, project


def _chunks(n: int, chunk: int, variant: str) -> list[tuple[list, list]]:
    now = datetime.now(UTC)
    out = []
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        ids = [str(task_uuid(os.urandom(16))) for _ in range(size)]
        if variant == VARIANTS[0]:
            key_ids = ["dk_" + secrets.token_hex(16) for _ in range(size)]
            keys = [(k, f"task:{t}", 1, os.urandom(60), now) for k, t in zip(key_ids, ids)]
        elif variant == VARIANTS[1]:
            key_ids = ["dk_" + secrets.token_hex(16)] * size
            keys = [(key_ids[0], f"import:{uuid.uuid4()}", 1, os.urandom(60), now)]
        else:
            key_ids = ["dk_" + secrets.token_hex(16)] * size
            keys = []
        hashes = [os.urandom(32) for _ in range(size)]
        out.append((ids, key_ids, hashes, keys))
    return out


async def run_variant(url: str, variant: str, n: int, chunk: int, payload_bytes: int = 1500) -> float:
    conn = await asyncpg.connect(url)
    try:
        org, project = await _prepare(conn, variant)
        chunks = _chunks(n, chunk, variant)
        ciphertext = os.urandom(payload_bytes)
        now = datetime.now(UTC)
        started = time.perf_counter()
        for ids, key_ids, hashes, keys in chunks:
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off; SAVEPOINT tasks")
                if keys:
                    await conn.copy_records_to_table("data_keys", schema_name=SCHEMA, records=keys,
                                                     columns=KEY_COLUMNS)
                rows = zip(ids, repeat(project), repeat(org), repeat(1), hashes, key_ids, repeat(ciphertext),
                           repeat(None), repeat(None), repeat("{}"), repeat(False), repeat(None), range(len(ids)),
                           repeat(now))
                await conn.copy_records_to_table("tasks", schema_name=SCHEMA, records=rows, columns=TASK_COLUMNS)
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("QUORUM_BENCH_DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--peer-rate", type=float, default=5000.0,
                        help="Label Studio's import rate to compare with (tasks/s; benchmarks/ingest.py measures it)")
    parser.add_argument("--payload-bytes", type=int, default=1500,
                        help="ciphertext per task (~200 words of text seal to ~1500 bytes)")
    args = parser.parse_args()
    from tests.conftest import _drop_database

    print(f"PostgreSQL COPY ceiling, {args.n:,} tasks of {args.payload_bytes} ciphertext bytes in chunks of {args.chunk} "
          f"(load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs)")
    print("| schema | tasks/s | × Label Studio (at {:,.0f}/s) |".format(args.peer_rate))
    print("|---|---:|---:|")
    for variant in VARIANTS:
        db = f"quorum_bench_ceiling_{secrets.token_hex(3)}"
        create_database(args.database_url, db)
        url = args.database_url.rsplit("/", 1)[0] + "/" + db
        try:
            upgrade_all(url)
            rate = asyncio.run(run_variant(url, variant, args.n, args.chunk, args.payload_bytes))
        finally:
            _drop_database(args.database_url, db)
        print(f"| {variant} | {rate:,.0f} | {rate / args.peer_rate:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
