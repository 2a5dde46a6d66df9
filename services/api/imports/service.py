"""Bulk task import as an asynchronous operation.

Receive: the request body streams (optionally gunzipped, with size and ratio limits) into the encrypted
blob store under `imports/<project>/<operation>`; only then is the operation row committed (status
`queued`) and 202 returned. Nothing is parsed while receiving except a sniff of the first bytes.

Process: an asyncio task in the receiving replica claims the operation with a lease in PostgreSQL and works
through the spooled file: split rows (main process) → validate/hash/redact/encrypt (process pool) → one
transaction per chunk that COPYs data keys and tasks, inserts pseudonyms, writes one `tasks.imported` outbox
row (and one `predictions.imported` when its tasks came with single_choice predictions) and advances the
operation's checkpoint (`rows_committed`). The three stages overlap: a committer task commits chunks in file
order while the reader keeps splitting and the workers keep redacting. If the replica dies, its lease lapses
and any replica's resumer claims the operation and continues after the checkpoint; content hashes make a
replayed row a duplicate, never a second task.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.imports.models import ImportOperation, ImportRowError
from services.api.imports.parsing import CHARSETS, FileError, iter_rows
from services.api.imports.pipeline import ChunkResult, RowContext, RowError, prepare_chunk, warm_up
from services.api.keys.service import keyring, project_keys, wrap_only
from services.api.projects.models import Project
from services.api.projects import policy
from services.api.projects.service import get_project, pii_settings, schema_document
from services.api.tasks.service import task_scope
from shared.auth.principal import Principal
from shared.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, ProblemError, UnsupportedMediaType
from shared.events.envelope import new_event_ids
from shared.events.outbox import events_stream, notify_channel

log = logging.getLogger("quorum.imports")

SCHEMA = "quorum_api"
CONTENT_TYPES = {
    "application/json": "json", "text/json": "json",
    "application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/x-jsonlines": "jsonl",
    "application/json-lines": "jsonl", "application/jsonlines": "jsonl",
    "text/csv": "csv", "application/csv": "csv",
}
FORMAT_ALIASES = {"json": "json", "labelstudio": "json", "jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv"}
BOMB_FLOOR = 64 * 1024  # the ratio check starts after this many inflated bytes
INFLATE_STEP = 64 * 1024
SPOOL_CHUNK = 256 * 1024
MAX_ROW_CHARS_IN_FLIGHT = 4 * 1024 * 1024


class ImportFailed(ProblemError):
    status, type, title = 422, "import-rejected", "Import rejected"


# -- the process pool -----------------------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def worker_count(settings: Any) -> int:
    return settings.import_workers or os.cpu_count() or 1


def process_pool(settings: Any) -> ProcessPoolExecutor:
    global _pool, _pool_size
    size = worker_count(settings)
    if _pool is None or _pool_size != size:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        # spawn: workers are fresh interpreters importing only the pipeline and the PII engine (~60 MB each),
        # not copies of the web process; no fork of a threaded process, no forkserver process to keep alive.
        context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=warm_up,
                                    initargs=(os.getpid(),))
        _pool_size = size
    return _pool


@atexit.register
def _shutdown_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


async def close_process_pool(ctx: Any) -> None:
    """App shutdown: stop the workers while the server still runs its hooks (atexit comes too late for the
    pool's semaphores, which the resource tracker then reports as leaked)."""
    await asyncio.get_running_loop().run_in_executor(None, _shutdown_pool)


# -- receiving ---------------------------------------------------------------------------------------------

def resolve_format(content_type: str | None, format_param: str | None) -> tuple[str, str]:
    """(format, charset) from `?format=` or the Content-Type (with its charset parameter)."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset":
            value = value.strip().strip('"').lower()
            if value not in CHARSETS:
                raise UnsupportedMediaType(f"charset {value!r} is not supported "
                                           f"(use one of: utf-8, utf-16, latin-1, cp1252)")
            charset = CHARSETS[value]
    if media.startswith("multipart/"):
        raise UnsupportedMediaType("send the file as the raw request body (not multipart); "
                                   "set Content-Type to application/json, application/x-ndjson or text/csv")
    if media in ("application/zip", "application/x-zip-compressed", "application/gzip", "application/x-gzip",
                 "application/x-tar"):
        raise UnsupportedMediaType("archives are not accepted for task import; send JSON, JSON Lines or CSV, "
                                   "optionally with 'Content-Encoding: gzip'")
    if format_param:
        fmt = FORMAT_ALIASES.get(format_param.lower())
        if fmt is None:
            raise BadRequest(f"unknown format {format_param!r} (json, labelstudio, jsonl, csv)")
        return fmt, charset
    fmt = CONTENT_TYPES.get(media)
    if fmt is None:
        raise UnsupportedMediaType(f"unsupported Content-Type {media or '(none)'!r}: use application/json "
                                   "(array or Label Studio tasks), application/x-ndjson or text/csv")
    return fmt, charset


_SIGNATURES = {b"PK\x03\x04": "a zip archive", b"\x1f\x8b": "gzip data (send it with Content-Encoding: gzip)",
               b"%PDF": "a PDF document", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
               b"7z\xbc\xaf": "a 7z archive", b"Rar!": "a RAR archive"}


def check_content(head: bytes, fmt: str, charset: str) -> None:
    """The first bytes must look like the declared format (415 otherwise)."""
    for magic, what in _SIGNATURES.items():
        if head.startswith(magic):
            raise UnsupportedMediaType(f"the body is {what}, not {fmt}")
    if charset == "utf-16" or head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return  # checked while decoding
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if b"\x00" in text[:4096]:
        raise UnsupportedMediaType(f"the body is binary data, not {fmt} text")
    first = text.lstrip()[:1]
    if not first:
        return
    if fmt == "json" and first != b"[":
        raise UnsupportedMediaType("declared JSON, but the body is not a JSON array ('[' expected first); "
                                   "for one task per line use application/x-ndjson")
    if fmt == "jsonl" and first != b"{":
        raise UnsupportedMediaType("declared JSON Lines, but the first line is not a JSON object")
    if fmt == "csv" and first in (b"[", b"{"):
        raise UnsupportedMediaType("declared CSV, but the body looks like JSON")


async def limited_body(chunks: AsyncIterable[bytes], *, cap: int, gzip: bool, max_ratio: int, fmt: str,
                       charset: str, counter: dict[str, int]) -> AsyncIterator[bytes]:
    """The body as it will be stored: inflated if gzip, at most `cap` bytes (413), sniffed (415)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    head = b""
    sniffed = False

    def account(data: bytes) -> None:
        counter["stored"] += len(data)
        if counter["stored"] > cap:
            raise PayloadTooLarge(f"the import is larger than the {cap} byte limit"
                                  + (" once decompressed" if gzip else ""), limit=cap)
        if gzip and counter["stored"] > BOMB_FLOOR and counter["stored"] > max_ratio * max(1, counter["wire"]):
            raise PayloadTooLarge(f"the gzip body inflates more than {max_ratio}:1 (decompression bomb refused)",
                                  limit=cap)

    async for chunk in chunks:
        counter["wire"] += len(chunk)
        if counter["wire"] > cap:
            raise PayloadTooLarge(f"the import is larger than the {cap} byte limit", limit=cap)
        if inflater is None:
            account(chunk)
            outputs = [chunk]
        else:
            outputs = []
            data = chunk
            try:
                while data and not inflater.eof:
                    out = inflater.decompress(data, INFLATE_STEP)
                    account(out)
                    outputs.append(out)
                    data = inflater.unconsumed_tail
            except zlib.error as exc:
                raise BadRequest(f"the gzip body is corrupt: {exc}") from None
        for out in outputs:
            if not out:
                continue
            if not sniffed:
                head += out
                if len(head) >= 64:
                    check_content(head, fmt, charset)
                    sniffed = True
            yield out
    if inflater is not None and not inflater.eof and counter["wire"]:
        raise BadRequest("the gzip body is truncated")
    if not sniffed:
        check_content(head, fmt, charset)


def _check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 200 or not value.isprintable():
        raise BadRequest("Idempotency-Key must be 1..200 printable characters")
    return value


async def find_by_idempotency_key(session: AsyncSession, project_id: uuid.UUID, key: str) -> ImportOperation | None:
    return (await session.execute(sa.select(ImportOperation).where(
        ImportOperation.project_id == project_id, ImportOperation.idempotency_key == key))).scalar_one_or_none()


async def receive_import(ctx: Any, principal: Principal, project_id: Any, body: AsyncIterable[bytes], *,
                         content_type: str | None, content_encoding: str | None, content_length: str | None,
                         format_param: str | None, filename: str | None, idempotency_key: str | None
                         ) -> tuple[ImportOperation, bool]:
    """Spool the body and queue the operation. Returns (operation, replayed) — `replayed` when the
    Idempotency-Key named an operation that already exists (its body is then not read)."""
    settings = ctx.settings
    key = _check_idempotency_key(idempotency_key)
    async with ctx.session_factory() as session:
        project = await get_project(session, principal, project_id)
        if not policy.can_import(principal, project):
            raise Forbidden("your role on this project does not allow importing tasks")
        if key is not None:
            existing = await find_by_idempotency_key(session, project.id, key)
            if existing is not None:
                return existing, True
    fmt, charset = resolve_format(content_type, format_param)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (gzip or none)")
    gzip = encoding != "identity"
    cap = settings.max_upload_bytes
    if content_length and content_length.isdigit() and int(content_length) > cap:
        raise PayloadTooLarge(f"the import is larger than the {cap} byte limit", limit=cap)
    safe_name = _safe_filename(filename)

    op_id = uuid.uuid4()
    spool_key = f"imports/{project.id}/{op_id}"
    store = ctx.extras["blob_store"]
    counter = {"wire": 0, "stored": 0}
    stream = limited_body(body, cap=cap, gzip=gzip, max_ratio=settings.import_max_compression_ratio, fmt=fmt,
                          charset=charset, counter=counter)
    await store.put(spool_key, stream, content_type="application/octet-stream", scope=f"import:{op_id}")
    try:
        async with ctx.session_factory() as session, session.begin():
            stmt = (sa.dialects.postgresql.insert(ImportOperation).values(
                id=op_id, project_id=project.id, org_id=project.org_id, created_by=principal.subject,
                status="queued", format=fmt, encoding=charset, filename=safe_name, idempotency_key=key,
                spool_key=spool_key, bytes_received=counter["stored"])
                .on_conflict_do_nothing().returning(ImportOperation.id))
            inserted = (await session.execute(stmt)).scalar_one_or_none()
            if inserted is None:  # a concurrent request with the same key won
                existing = await find_by_idempotency_key(session, project.id, key or "")
                await store.delete(spool_key)
                if existing is None:
                    raise ImportFailed("the import could not be recorded; retry")
                return existing, True
            operation = (await session.execute(sa.select(ImportOperation).where(ImportOperation.id == op_id))
                         ).scalar_one()
    except BaseException:
        with contextlib.suppress(Exception):
            await store.delete(spool_key)
        raise
    start_processing(ctx, op_id)
    return operation, False


def _safe_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    from services.api.media.names import display_name

    return display_name(filename)  # refuses traversal (400), reduces to a display name


# -- processing ---------------------------------------------------------------------------------------------

def replica_id(ctx: Any) -> str:
    rid = ctx.extras.get("replica_id")
    if rid is None:
        rid = ctx.extras["replica_id"] = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return rid


def start_processing(ctx: Any, op_id: uuid.UUID) -> asyncio.Task:
    jobs: set[asyncio.Task] = ctx.extras.setdefault("import_jobs", set())
    task = asyncio.create_task(run_operation(ctx, op_id), name=f"import-{op_id}")
    jobs.add(task)
    task.add_done_callback(jobs.discard)
    return task


async def claim(ctx: Any, op_id: uuid.UUID) -> ImportOperation | None:
    lease = ctx.settings.import_lease_seconds
    async with ctx.session_factory() as session, session.begin():
        now = sa.func.now()
        result = await session.execute(
            sa.update(ImportOperation)
            .where(ImportOperation.id == op_id,
                   sa.or_(ImportOperation.status == "queued",
                          sa.and_(ImportOperation.status == "running", ImportOperation.lease_until < now)))
            .values(status="running", lease_owner=replica_id(ctx),
                    lease_until=now + sa.text(f"interval '{int(lease)} seconds'"),
                    started_at=sa.func.coalesce(ImportOperation.started_at, now))
            .returning(ImportOperation))
        return result.scalar_one_or_none()


async def resume_abandoned(ctx: Any) -> list[uuid.UUID]:
    """Start every queued operation nobody runs and every running one whose lease lapsed."""
    async with ctx.session_factory() as session:
        rows = (await session.execute(sa.select(ImportOperation.id).where(
            sa.or_(sa.and_(ImportOperation.status == "queued",
                           ImportOperation.created_at < sa.func.now() - sa.text("interval '2 seconds'")),
                   sa.and_(ImportOperation.status == "running", ImportOperation.lease_until < sa.func.now())))
            .limit(20))).scalars().all()
    running = {t.get_name() for t in ctx.extras.get("import_jobs", set())}
    started = []
    for op_id in rows:
        if f"import-{op_id}" not in running:
            start_processing(ctx, op_id)
            started.append(op_id)
    return started


async def import_resumer(ctx: Any) -> None:
    """Background job of every api replica."""
    while True:
        try:
            await resume_abandoned(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("import resumer failed; retrying")
        await asyncio.sleep(ctx.settings.import_resume_interval)


class _Spool:
    """The decrypted spool as chunks, counting bytes read (for progress)."""

    def __init__(self, store: Any, key: str) -> None:
        self.store, self.key, self.read = store, key, 0

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self.store.open_range(self.key):
            self.read += len(chunk)
            yield chunk


async def run_operation(ctx: Any, op_id: uuid.UUID) -> None:
    op = await claim(ctx, op_id)
    if op is None:
        return
    heartbeat = asyncio.create_task(_heartbeat(ctx, op_id))
    try:
        await _process(ctx, op)
    except asyncio.CancelledError:
        raise  # shutdown: the lease lapses and a replica resumes from the checkpoint
    except Exception as exc:
        log.exception("import failed", extra={"operation_id": str(op_id)})
        await _finish(ctx, op, "failed", error=f"internal error ({type(exc).__name__}); rows committed so far "
                                               "are complete tasks")
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await heartbeat


async def _heartbeat(ctx: Any, op_id: uuid.UUID) -> None:
    lease = ctx.settings.import_lease_seconds
    while True:
        await asyncio.sleep(max(1.0, lease / 3))
        async with ctx.session_factory() as session, session.begin():
            await session.execute(sa.update(ImportOperation).where(
                ImportOperation.id == op_id, ImportOperation.lease_owner == replica_id(ctx),
                ImportOperation.status == "running").values(
                lease_until=sa.func.now() + sa.text(f"interval '{int(lease)} seconds'")))


async def _row_context(ctx: Any, op: ImportOperation, fmt: str) -> tuple[RowContext, Project]:
    async with ctx.session_factory() as session:
        project = (await session.execute(sa.select(Project).where(Project.id == op.project_id))).scalar_one()
        version = op.schema_version or project.schema_version
        schema = await schema_document(session, project.id, version)
    ring = keyring(ctx)
    keys = project_keys(ring, project.id, project.secret_sealed)
    wrapper = wrap_only(ring)
    pii = pii_settings(project)
    policy = {"default": pii.default.value, "entities": {k.value: v.value for k, v in pii.entities.items()}}
    return RowContext(project_id=str(project.id), org_id=str(project.org_id), schema_version=version,
                      label_schema=schema, pii_enabled=pii.enabled, pii_policy=policy,
                      keep_original=pii.keep_original, pseudonym_key=keys.pseudonym_key,
                      content_hash_key=keys.content_hash_key, wrap_version=wrapper.version,
                      wrap_key=wrapper.wrap_key, from_csv=fmt == "csv",
                      tasks_per_key=ctx.settings.import_tasks_per_data_key), project


async def _process(ctx: Any, op: ImportOperation) -> None:
    row_ctx, project = await _row_context(ctx, op, op.format)
    if op.schema_version is None:
        async with ctx.session_factory() as session, session.begin():
            await session.execute(sa.update(ImportOperation).where(ImportOperation.id == op.id)
                                  .values(schema_version=row_ctx.schema_version))
    settings = ctx.settings
    pool = process_pool(settings)
    loop = asyncio.get_running_loop()
    chunk_rows = max(1, settings.import_chunk_rows)
    max_inflight = settings.import_max_inflight_chunks or worker_count(settings) + 1
    spool = _Spool(ctx.extras["blob_store"], op.spool_key)
    resume_after = op.rows_committed
    state = {"stored_errors": await _stored_errors(ctx, op.id)}

    timings = {"workers": 0.0, "commit": 0.0}
    began = time.perf_counter()
    # Reading/splitting (this task), redaction + encryption (the pool) and committing (the committer task)
    # overlap: while a chunk is COPYed, the file keeps being split and the workers stay fed. The queue
    # bounds the chunks in flight (memory): one committing, the queued ones, one waiting to be queued — at
    # most `max_inflight` (default: workers + 1). Chunks are committed strictly in file order (checkpoint).
    pending: asyncio.Queue[tuple[int, int, asyncio.Future] | None] = asyncio.Queue(maxsize=max(1, max_inflight - 2))

    async def committer() -> None:
        while (item := await pending.get()) is not None:
            last_row, bytes_read, future = item
            t0 = time.perf_counter()
            result: ChunkResult = await future
            t1 = time.perf_counter()
            await _commit_chunk(ctx, op, project, row_ctx, result, last_row, bytes_read, state)
            timings["workers"] += t1 - t0
            timings["commit"] += time.perf_counter() - t1

    commit_task = asyncio.create_task(committer(), name=f"import-commit-{op.id}")

    async def hand_over(item: tuple[int, int, asyncio.Future] | None) -> None:
        put = asyncio.ensure_future(pending.put(item))
        await asyncio.wait({put, commit_task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():  # the committer failed: stop reading, surface its error
            put.cancel()
            await commit_task
            raise RuntimeError("import committer stopped")

    def submit(batch: list[tuple[int, Any]]) -> asyncio.Future:
        return loop.run_in_executor(pool, prepare_chunk, row_ctx, batch)

    batch: list[tuple[int, Any]] = []
    batch_chars = 0
    file_error: FileError | None = None
    last_row = resume_after
    try:
        try:
            async for number, raw in iter_rows(spool.chunks(), op.format, op.encoding):
                last_row = number
                if number <= resume_after:
                    continue
                batch.append((number, raw))
                batch_chars += len(raw) if isinstance(raw, bytes | str) else 256
                if len(batch) >= chunk_rows or batch_chars >= MAX_ROW_CHARS_IN_FLIGHT:
                    await hand_over((number, spool.read, submit(batch)))
                    batch, batch_chars = [], 0
        except FileError as exc:
            file_error = exc
        if file_error is not None:
            row = max(file_error.row, last_row + (0 if batch else 1), 1)
            batch.append((row, RowError(row, None, file_error.message)))
        if batch:
            await hand_over((batch[-1][0], spool.read, submit(batch)))
        await hand_over(None)
        await commit_task
    finally:
        if not commit_task.done():
            commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await commit_task
    total = time.perf_counter() - began
    log.info("import processed", extra={"operation_id": str(op.id), "seconds": round(total, 3),
                                        "waiting_for_workers": round(timings["workers"], 3),
                                        "committing": round(timings["commit"], 3)})
    await _finish(ctx, op, "failed" if file_error else "succeeded",
                  error=f"row {file_error.row}: {file_error.message}" if file_error else None)


async def _stored_errors(ctx: Any, op_id: uuid.UUID) -> int:
    async with ctx.session_factory() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(ImportRowError)
                                      .where(ImportRowError.operation_id == op_id))).scalar_one()


async def _commit_chunk(ctx: Any, op: ImportOperation, project: Project, row_ctx: RowContext,
                        result: ChunkResult, last_row: int, bytes_read: int, state: dict[str, int]) -> None:
    """One transaction: whole tasks (key, ciphertext, pseudonyms, event) or nothing; checkpoint advances."""
    async with ctx.session_factory() as session, session.begin():
        # Through SQLAlchemy first: that opens the transaction on the connection, so the raw asyncpg COPYs
        # below run inside it (a raw command before it would autocommit on its own).
        # The lock serialises writers of one project, so the duplicate check cannot race another import.
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                              {"key": f"tasks:{project.id}"})
        # A crash may lose the last few chunk commits, never half of one: their rows sit after the durable
        # checkpoint and are redone on resume. So no need to wait for the WAL flush of every chunk.
        await session.execute(sa.text("SET LOCAL synchronous_commit = off"))
        conn = await (await session.connection()).get_raw_connection()
        pg = conn.driver_connection
        assert pg.is_in_transaction()
        duplicates = 0
        fresh: list[int] | None = None  # indexes of the chunk's tasks to insert; None = all of them
        if len(result):
            hashes = result.content_hashes
            existing = {r[0] for r in await pg.fetch(
                f"SELECT content_hash FROM {SCHEMA}.tasks WHERE project_id = $1 AND content_hash = ANY($2::bytea[])",
                project.id, hashes)}
            if existing or len(set(hashes)) != len(hashes):
                fresh = []
                for i, content_hash in enumerate(hashes):
                    if content_hash in existing:
                        duplicates += 1
                    else:
                        existing.add(content_hash)
                        fresh.append(i)
        created = len(result) if fresh is None else len(fresh)
        if created:
            await _copy_tasks(ctx, pg, op, project, row_ctx, result, fresh)
        errors = result.errors
        room = max(0, ctx.settings.import_max_stored_errors - state["stored_errors"])
        if errors and room:
            seqs: dict[int, int] = {}
            records = []
            for err in errors[:room]:
                seq = seqs[err.row] = seqs.get(err.row, -1) + 1
                records.append((op.id, err.row, seq, (err.field or None) and err.field[:300], err.message[:2000]))
            await pg.executemany(
                f"INSERT INTO {SCHEMA}.import_row_errors (operation_id, row_number, seq, field, message) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING", records)
            state["stored_errors"] += len(records)
        await pg.execute(
            f"UPDATE {SCHEMA}.import_operations SET rows_committed = GREATEST(rows_committed, $2), "
            "rows_seen = GREATEST(rows_seen, $2), created_count = created_count + $3, "
            "duplicate_count = duplicate_count + $4, invalid_count = invalid_count + $5, "
            "bytes_processed = GREATEST(bytes_processed, $6), "
            f"lease_until = now() + interval '{int(ctx.settings.import_lease_seconds)} seconds' WHERE id = $1",
            op.id, last_row, created, duplicates, result.invalid_rows, bytes_read)


async def _copy_tasks(ctx: Any, pg: Any, op: ImportOperation, project: Project, row_ctx: RowContext,
                      result: ChunkResult, fresh: list[int] | None) -> None:
    """COPY the chunk's tasks (all, or the `fresh` indexes), their data keys, pseudonyms and one event (two when
    the tasks came with single_choice predictions: `predictions.imported` for the consensus service)."""
    now = datetime.now(UTC)

    def column(values: list) -> list:
        return values if fresh is None else [values[i] for i in fresh]

    task_ids = column(result.task_ids)
    key_ids = column(result.key_ids)
    original_keys = column(result.original_keys)
    scopes = [task_scope(t) for t in task_ids]
    # Group keys (several tasks per key): scope `import-tasks:<operation>`, one row per key.
    group_scope = f"import-tasks:{op.id}"
    key_rows: list[tuple] = list({key_id: (key_id, group_scope, version, wrapped, now) for key_id, version, wrapped
                                  in zip(key_ids, column(result.kek_versions), column(result.wrapped_keys))}.values())
    if any(k is not None for k in original_keys):
        key_rows.extend((k[0], scope, k[1], k[2], now) for k, scope in zip(original_keys, scopes) if k is not None)
    n = len(task_ids)
    task_rows = zip(task_ids, repeat(project.id, n), repeat(project.org_id), repeat(row_ctx.schema_version),
                    column(result.content_hashes), key_ids, column(result.data_enc),
                    [k[0] if k is not None else None for k in original_keys], column(result.original_enc),
                    column(result.pii_counts), column(result.has_predictions), repeat(op.id), column(result.rows),
                    repeat(now))
    pseudonym_tasks: list[str] = []
    pseudonym_values: list[str] = []
    for task_id, names in zip(task_ids, column(result.pseudonyms)):
        for name in names:
            pseudonym_tasks.append(task_id)
            pseudonym_values.append(name)
    stream = events_stream(ctx.settings.stream_prefix, "api")
    occurred = now.isoformat().replace("+00:00", "Z")
    project_id, org_id = str(project.id), str(project.org_id)
    # One announcement per committed chunk: a bulk import of 100k tasks is 100 events, not 100k.
    predictions = _chunk_predictions(result, fresh)
    event_ids = new_event_ids(2 if predictions else 1)
    envelope = orjson.dumps({
        "id": event_ids[0], "type": "tasks.imported", "version": 1, "occurred_at": occurred, "producer": "api",
        "org_id": org_id, "project_id": project_id, "request_id": None,
        "payload": {"project_id": project_id, "dataset_id": str(op.id), "task_ids": task_ids, "priority": 0,
                    "overlap": project.overlap, "schema_version": row_ctx.schema_version}}).decode()
    outbox_rows = [(event_ids[0], stream, "tasks.imported", envelope)]
    if predictions:
        outbox_rows.append((event_ids[1], stream, "predictions.imported", orjson.dumps({
            "id": event_ids[1], "type": "predictions.imported", "version": 1, "occurred_at": occurred,
            "producer": "api", "org_id": org_id, "project_id": project_id, "request_id": None,
            "payload": {"project_id": project_id, "dataset_id": str(op.id), "predictions": predictions}}).decode()))
    await pg.copy_records_to_table("data_keys", schema_name=SCHEMA, records=key_rows,
                                   columns=["id", "scope", "kek_version", "wrapped", "created_at"])
    await pg.copy_records_to_table("tasks", schema_name=SCHEMA, records=task_rows, columns=[
        "id", "project_id", "org_id", "schema_version", "content_hash", "key_id", "data_enc", "original_key_id",
        "original_enc", "pii_counts", "has_predictions", "import_id", "row_number", "created_at"])
    if pseudonym_values:
        # One statement for the chunk's pseudonyms (a pseudonym already recorded for the task is skipped).
        await pg.execute(
            f"INSERT INTO {SCHEMA}.task_pseudonyms (project_id, pseudonym, task_id) "
            "SELECT $1::uuid, p, t FROM unnest($2::varchar[], $3::uuid[]) AS u(p, t) ON CONFLICT DO NOTHING",
            project.id, pseudonym_values, pseudonym_tasks)
    await pg.copy_records_to_table("outbox", schema_name=SCHEMA, records=outbox_rows,
                                   columns=["event_id", "stream", "type", "envelope"])
    await pg.execute("SELECT pg_notify($1, '')", notify_channel(ctx.outbox))


def _chunk_predictions(result: ChunkResult, fresh: list[int] | None) -> list[dict[str, Any]]:
    """The `predictions.imported` entries of the chunk's inserted tasks (all, or the `fresh` indexes)."""
    if not result.prediction_tasks:
        return []
    inserted = None if fresh is None else set(fresh)
    task_ids = result.task_ids
    return [{"task_id": task_ids[i], "control": control, "model_version": model_version, "value": value,
             "score": score}
            for i, control, value, score, model_version in zip(
                result.prediction_tasks, result.prediction_controls, result.prediction_values,
                result.prediction_scores, result.prediction_models)
            if inserted is None or i in inserted]


async def _finish(ctx: Any, op: ImportOperation, status: str, *, error: str | None = None) -> None:
    # The raw upload holds unredacted data: delete it (which shreds its key) before reporting the end, so a
    # finished operation never leaves it behind.
    with contextlib.suppress(Exception):
        await ctx.extras["blob_store"].delete(op.spool_key)
    async with ctx.session_factory() as session, session.begin():
        await session.execute(sa.update(ImportOperation).where(ImportOperation.id == op.id).values(
            status=status, error=error, finished_at=sa.func.now(), lease_until=None,
            bytes_processed=ImportOperation.bytes_received))


# -- reading -------------------------------------------------------------------------------------------------

async def operation_status(session: AsyncSession, principal: Principal, op_id: Any, *, errors_limit: int = 100,
                           errors_after: int = 0) -> dict[str, Any]:
    try:
        op_uuid = uuid.UUID(str(op_id))
    except ValueError:
        raise NotFound("no such import operation") from None
    op = (await session.execute(sa.select(ImportOperation).where(ImportOperation.id == op_uuid))).scalar_one_or_none()
    if op is None:
        raise NotFound("no such import operation")
    try:
        project = await get_project(session, principal, op.project_id)
    except NotFound:
        raise NotFound("no such import operation") from None
    if not policy.can_import(principal, project):
        raise Forbidden("your role on this project does not allow seeing its imports")
    errors = (await session.execute(
        sa.select(ImportRowError).where(ImportRowError.operation_id == op.id, ImportRowError.row_number > errors_after)
        .order_by(ImportRowError.row_number, ImportRowError.seq).limit(errors_limit))).scalars().all()
    return operation_view(op, errors)


def operation_view(op: ImportOperation, errors: list[ImportRowError] | None = None) -> dict[str, Any]:
    done = op.status in ("succeeded", "failed")
    progress = 1.0 if done else (op.bytes_processed / op.bytes_received if op.bytes_received else 0.0)
    return {
        "id": str(op.id), "project_id": str(op.project_id), "status": op.status, "format": op.format,
        "encoding": op.encoding, "filename": op.filename, "idempotency_key": op.idempotency_key,
        "schema_version": op.schema_version,
        "bytes_received": op.bytes_received, "bytes_processed": op.bytes_processed,
        "progress": round(min(progress, 1.0), 4),
        "rows_processed": op.rows_committed,
        "counts": {"valid": op.created_count + op.duplicate_count, "created": op.created_count,
                   "duplicates": op.duplicate_count, "invalid": op.invalid_count},
        "error": op.error,
        "errors": [{"row": e.row_number, "field": e.field, "message": e.message} for e in (errors or [])],
        "created_at": op.created_at.isoformat() if op.created_at else None,
        "started_at": op.started_at.isoformat() if op.started_at else None,
        "finished_at": op.finished_at.isoformat() if op.finished_at else None,
        "elapsed_seconds": ((op.finished_at or datetime.now(UTC)) - op.started_at).total_seconds()
        if op.started_at else None,
    }


def monotonic() -> float:
    return time.monotonic()
