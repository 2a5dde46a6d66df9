"""Bulk task import as an asynchronous operation.

Receive: the request body streams (optionally gunzipped, with size and ratio limits) into the encrypted
blob store under `imports/<project>/<operation>`; only then is the operation row committed (status
`queued`) and 202 returned. Nothing is parsed while receiving except a sniff of the first bytes.

Process: an asyncio task in the receiving replica claims the operation with a lease in PostgreSQL and works
through the spooled file. JSON and JSON Lines: this process cuts the file into ~1 MiB blocks at likely
row boundaries and the process pool splits, parses, validates, hashes, redacts, encrypts and encodes each
block's tasks as PostgreSQL binary COPY rows (blocks.py, pipeline.py); blocks and results cross through tmpfs
handoffs (handoff.py). Other charsets are transcoded to UTF-8 on the way. CSV is split row by row here
(parsing.py) and prepared the same way. Each chunk is one transaction: COPY of its tasks (duplicates found by
the unique content-hash index), then one statement for its data keys, pseudonyms, row errors, its
`tasks.imported` event (and one `predictions.imported` when its tasks came with single_choice predictions)
and the checkpoint (`rows_committed`). The stages overlap: the workers prepare the next blocks while chunks
commit, two at a time on connections the import holds, their checkpoints in file order. If the replica dies, its lease lapses and any
replica's resumer claims the operation and continues after the checkpoint; content hashes make a replayed row
a duplicate, never a second task.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import multiprocessing
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.imports.models import ImportOperation, ImportRowError
from services.api.imports.blocks import Block, cut_blocks, file_message, prepare_block, take_tail
from services.api.imports import handoff
from services.api.imports.parsing import CHARSETS, FileError, csv_rows
from services.api.imports.pipeline import (TASK_COPY_COLUMNS, ChunkResult, RowContext, RowError,
                                           prepare_chunk, rebase_rows, warm_up)
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
        handoff.sweep()
        _pool = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=warm_up,
                                    initargs=(os.getpid(),))
        _pool_size = size
    return _pool


def start_pool(settings: Any) -> None:
    """Make sure the pool's processes exist. A pool starts a process for each task submitted while none is
    idle: one warm-up task per process starts them all now, not one at each of the first imports' blocks."""
    if _pool is None or _pool_size != worker_count(settings):
        pool = process_pool(settings)
        for _ in range(_pool_size):
            pool.submit(int)


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

    start_pool(settings)  # the workers start (a second or two) while the body is received, not after
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
    """Background job of every api replica. Starts the import workers first (unless configured not to):
    each costs ~0.25 s of CPU to start, which would otherwise fall on the first import."""
    if ctx.settings.import_workers_at_startup:
        start_pool(ctx.settings)
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
                      tasks_per_key=ctx.settings.import_tasks_per_data_key, import_id=str(op.id)), project


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
    chunks: AsyncIterator[bytes] = spool.chunks()
    in_blocks = op.format in ("json", "jsonl")
    resume_after = op.rows_committed
    state = {"stored_errors": await _stored_errors(ctx, op.id)}

    timings = {"workers": 0.0, "commit": 0.0}
    began, cpu_began = time.perf_counter(), time.process_time()
    # Reading/splitting (this task), redaction + encryption (the pool) and committing (the committer task)
    # overlap: while a chunk is COPYed, the file keeps being read and the workers stay fed. The queue
    # bounds the chunks in flight (memory): one committing, the queued ones, one waiting to be queued — at
    # most `max_inflight` (default: workers + 1). Chunks are committed strictly in file order (checkpoint).
    pending: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=max(1, max_inflight - 2))
    file_error: tuple[int, str] | None = None
    rows_before = 0  # blocks: rows of the file before the block being committed
    carry: bytes | None = None  # blocks: an element the previous block did not finish
    unclaimed: set[_Job] = set()  # jobs whose handoff files the committer has not taken yet
    lanes = max(1, settings.import_commit_connections)
    committing: collections.deque[tuple[asyncio.Task, frozenset[bytes]]] = collections.deque()
    previous: list[asyncio.Future | None] = [None]  # the last dispatched chunk's outcome (True: committed)
    connections = CommitConnections(ctx.engine, lanes)
    files = handoff.HandoffFiles()
    notified = [-NOTIFY_INTERVAL]  # when a chunk last woke the outbox relay (loop time)

    def submit_block(block: Block) -> asyncio.Future:
        into, out = files.take(), files.take()
        sent = handoff.stash(block.data, into)
        future = loop.run_in_executor(pool, prepare_block, row_ctx, replace(block, data=sent), out)

        def prepared(future: asyncio.Future) -> None:
            # `into` has been read (or never will be). `out` is the committer's to give back once it has read
            # it: this callback may run after the committer took the result (a future that was done when
            # awaited), so it must not judge from the result. An `out` the worker did not use (small rows,
            # or a failure) is not reused; `files.close` removes it with the others.
            if not future.cancelled():  # (if cancelled, the worker may still be at it)
                files.give_back(into)

        future.add_done_callback(prepared)
        return future

    async def committer() -> None:
        nonlocal file_error, rows_before, carry
        block_error = None
        while (job := await pending.get()) is not None:
            t0 = time.perf_counter()
            result: ChunkResult = await job.future
            unclaimed.discard(job)
            base, last_row = 0, job.last_row
            if job.block is not None:
                if carry is not None:  # the block's start was not an element start: redo it from the carried one
                    files.release(result.copy_rows)
                    block = job.block
                    block = job.block = replace(block, data=carry + block.data)
                    carry = None
                    result = await submit_block(block)
                rows_handoff = result.copy_rows
                result.copy_rows = handoff.claim(rows_handoff)
                files.release(rows_handoff)
                base = rows_before
                carry = take_tail(job.block, result)
                if result.file_error is not None:
                    row, message = result.file_error[0], file_message(result.file_error[1], base + result.file_error[0])
                    result.errors.append(RowError(row, None, message))
                    result.invalid_rows += 1
                    block_error = file_error = (base + row, message)
                for err in result.errors:
                    err.row += base
                rebase_rows(result.copy_rows, result.row_offsets, result.rows, base)
                rows_before = last_row = base + result.count
            t1 = time.perf_counter()
            timings["workers"] += t1 - t0
            # Chunks commit on `lanes` connections at once (the COPYs overlap, the commits stay in file order),
            # but never next to a chunk with one of the same content hashes: the unique index would make the
            # later one wait in PostgreSQL for the earlier one, which waits here for the later one's turn.
            hashes = frozenset(result.content_hashes)
            while committing and (len(committing) >= lanes or any(not hashes.isdisjoint(h) for _, h in committing)):
                await committing.popleft()[0]
            earlier = previous[0]
            previous[0] = done = loop.create_future()
            notify = loop.time() - notified[0] >= NOTIFY_INTERVAL
            if notify:
                notified[0] = loop.time()
            committing.append((asyncio.create_task(_commit_chunk(
                ctx, op, project, row_ctx, result, base, last_row, job.bytes_read, state, resume_after,
                connections=connections, earlier=earlier, done=done, notify=notify,
                distinct=len(hashes) == len(result.content_hashes))), hashes))
            timings["commit"] += time.perf_counter() - t1
            if block_error is not None:
                break
        while committing:
            await committing.popleft()[0]

    commit_task = asyncio.create_task(committer(), name=f"import-commit-{op.id}")

    async def hand_over(job: _Job | None) -> bool:
        """False: the committer stopped at an error that ends the file."""
        put = asyncio.ensure_future(pending.put(job))
        await asyncio.wait({put, commit_task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():  # the committer ended: at an error that ends the file, or failing (raises here)
            put.cancel()
            await commit_task
            if file_error is not None:
                return False
            raise RuntimeError("import committer stopped")
        return True

    def submit(function: Any, work: Any) -> asyncio.Future:
        return loop.run_in_executor(pool, function, row_ctx, work)

    async def hand_over_block(block: Block) -> bool:
        job = _Job(submit_block(block), block, 0, spool.read)
        unclaimed.add(job)
        return await hand_over(job)

    try:
        try:
            if in_blocks:
                async for block in cut_blocks(chunks, op.format, settings.import_block_bytes, op.encoding,
                                                 block_rows=settings.import_block_rows):
                    if not await hand_over_block(block):
                        break
            else:
                await _read_rows(chunks, op, spool, resume_after, chunk_rows, submit, hand_over)
        except FileError as exc:  # the file cannot be read on: the rows before it stand, this one is invalid
            file_error = (exc.row, exc.message)
            await hand_over(_Job(submit(prepare_chunk, [(exc.row, RowError(exc.row, None, exc.message))]), None,
                                 exc.row, spool.read))
        if not commit_task.done():
            await hand_over(None)
        await commit_task
    finally:
        if not commit_task.done():
            commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await commit_task
        for chunk_commit, _ in committing:
            chunk_commit.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await chunk_commit
        for job in unclaimed:  # prepared (or still being prepared) but never committed: drop their handoffs
            job.future.add_done_callback(_discard_result)
        files.close()
        await connections.close()
    total = time.perf_counter() - began
    log.info("import processed", extra={"operation_id": str(op.id), "seconds": round(total, 3),
                                        "server_cpu_seconds": round(time.process_time() - cpu_began, 3),
                                        "waiting_for_workers": round(timings["workers"], 3),
                                        "committing": round(timings["commit"], 3)})
    await _finish(ctx, op, "failed" if file_error else "succeeded",
                  error=f"row {file_error[0]}: {file_error[1]}" if file_error else None)


@dataclass(eq=False)
class _Job:
    future: asyncio.Future
    block: Block | None  # blocks: the block the worker prepares (kept to redo it joined to a carried tail)
    last_row: int  # rows: the last row number of the chunk (blocks: known once the block is prepared)
    bytes_read: int


def _discard_result(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        handoff.discard(future.result().copy_rows)


async def _read_rows(chunks: AsyncIterator[bytes], op: ImportOperation, spool: _Spool, resume_after: int,
                     chunk_rows: int, submit: Any, hand_over: Any) -> None:
    """CSV: split row by row here, prepared in the pool."""
    batch: list[tuple[int, Any]] = []
    batch_chars = 0
    try:
        async for number, raw in csv_rows(chunks, op.encoding):
            if number <= resume_after:
                continue
            batch.append((number, raw))
            batch_chars += len(raw) if isinstance(raw, bytes | str) else 256
            if len(batch) >= chunk_rows or batch_chars >= MAX_ROW_CHARS_IN_FLIGHT:
                await hand_over(_Job(submit(prepare_chunk, batch), None, number, spool.read))
                batch, batch_chars = [], 0
    except FileError:
        if batch:
            await hand_over(_Job(submit(prepare_chunk, batch), None, batch[-1][0], spool.read))
        raise
    if batch:
        await hand_over(_Job(submit(prepare_chunk, batch), None, batch[-1][0], spool.read))


async def _stored_errors(ctx: Any, op_id: uuid.UUID) -> int:
    async with ctx.session_factory() as session:
        return (await session.execute(sa.select(sa.func.count()).select_from(ImportRowError)
                                      .where(ImportRowError.operation_id == op_id))).scalar_one()


# The rest of a chunk's transaction in one round trip: its data keys, pseudonyms, row errors and events,
# the checkpoint, and the relay's wake-up (a round trip costs ~0.5 ms of system time on a small machine, and
# a chunk used to take a dozen).
_CHUNK_RECORDS = f"""
WITH keys AS (
    INSERT INTO {SCHEMA}.data_keys (id, scope, kek_version, wrapped, created_at)
    SELECT k.id, k.scope, k.kek_version, k.wrapped, $13::timestamptz
    FROM unnest($1::varchar[], $2::varchar[], $3::int[], $4::bytea[]) AS k(id, scope, kek_version, wrapped)
), pseudonyms AS (
    INSERT INTO {SCHEMA}.task_pseudonyms (project_id, pseudonym, task_id)
    SELECT $14::uuid, p.pseudonym, p.task_id FROM unnest($5::varchar[], $6::uuid[]) AS p(pseudonym, task_id)
    ON CONFLICT DO NOTHING
), row_errors AS (
    INSERT INTO {SCHEMA}.import_row_errors (operation_id, row_number, seq, field, message)
    SELECT $15::uuid, e.row_number, e.seq, e.field, e.message
    FROM unnest($7::bigint[], $8::smallint[], $9::varchar[], $10::text[]) AS e(row_number, seq, field, message)
    ON CONFLICT DO NOTHING
), events AS (
    INSERT INTO {SCHEMA}.outbox (event_id, stream, type, envelope)
    SELECT e.event_id, $16::varchar, e.type, e.envelope
    FROM unnest($11::varchar[], $12::varchar[], $17::text[]) AS e(event_id, type, envelope)
)
UPDATE {SCHEMA}.import_operations SET rows_committed = GREATEST(rows_committed, $18),
    rows_seen = GREATEST(rows_seen, $18), created_count = created_count + $19,
    duplicate_count = duplicate_count + $20, invalid_count = invalid_count + $21,
    bytes_processed = GREATEST(bytes_processed, $22), lease_until = now() + make_interval(secs => $23)
WHERE id = $15
RETURNING (SELECT pg_notify($24, '') WHERE $24::text IS NOT NULL)"""


async def _commit_chunk(ctx: Any, op: ImportOperation, project: Project, row_ctx: RowContext, result: ChunkResult,
                        base: int, last_row: int, bytes_read: int, state: dict[str, int], resume_after: int, *,
                        connections: CommitConnections, earlier: asyncio.Future | None = None,
                        done: asyncio.Future | None = None, notify: bool = True, distinct: bool = False) -> None:
    """One transaction: whole tasks (key, ciphertext, pseudonyms, event) or nothing; checkpoint advances.
    Row numbers are `base` + the result's; rows up to `resume_after` were committed before a resume.
    `earlier`: the previous chunk's outcome, awaited before this one records its checkpoint and commits (so
    the checkpoint only ever covers committed rows); `done`: this chunk's, for the next one.

    Raw asyncpg in explicit statements, four round trips for a chunk without duplicates: BEGIN, the COPY, the
    records, COMMIT. Duplicates are found by the unique index on (project, content hash): the COPY runs under
    a savepoint, and only if it hits the index are the existing hashes looked up and the COPY redone without
    them."""
    keep: list[int] | None = None  # indexes of the chunk's tasks to insert; None = all of them
    errors, invalid_rows = result.errors, result.invalid_rows
    if resume_after > base:
        keep = [i for i, row in enumerate(result.rows) if base + row > resume_after]
        errors = [e for e in errors if e.row > resume_after]
        invalid_rows = len({e.row for e in errors})
    try:
        async with connections.connection() as pg:
            try:
                # A crash may lose the last few chunk commits, never half of one: their rows sit after the durable
                # checkpoint and are redone on resume, so no need to wait for the WAL flush of every chunk.
                # lock_timeout: two imports of the same content into one project wait for each other's index
                # entries; one of them backs off and retries rather than both waiting forever.
                await pg.execute("BEGIN; SET LOCAL synchronous_commit = off; "
                                 f"SET LOCAL lock_timeout = '{IMPORT_LOCK_TIMEOUT}'; SAVEPOINT tasks")
                keep, duplicates = await _insert_tasks(pg, project, result, keep, distinct)
                args = _chunk_record_args(ctx, op, project, row_ctx, result, keep, errors, state, last_row,
                                          duplicates, invalid_rows, bytes_read, notify)
                if earlier is not None and not await earlier:
                    raise ImportAborted("an earlier chunk of the import was not committed")
                await pg.fetchval(_CHUNK_RECORDS, *args)
                await pg.execute("COMMIT")
            except BaseException:
                if not pg.is_closed() and pg.is_in_transaction():
                    with contextlib.suppress(Exception):  # one that cannot roll back is dropped with the error
                        await pg.execute("ROLLBACK")
                raise
    except BaseException:
        if done is not None and not done.done():
            done.set_result(False)
        raise
    if done is not None:
        done.set_result(True)


class ImportAborted(Exception):
    pass


class CommitConnections:
    """An import's commit connections, held while it runs: a pool checkout per chunk cost three more round
    trips (the pool's liveness check is a transaction of its own on asyncpg) and a reset on return.
    A connection whose chunk failed is dropped and replaced at its next use."""

    def __init__(self, engine: Any, size: int) -> None:
        self.engine = engine
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(max(1, size)):
            self._free.put_nowait(None)  # opened at first use
        self._open: set[Any] = set()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._free.get()
        try:
            if conn is None:
                conn = await self.engine.connect()
                self._open.add(conn)
            yield (await conn.get_raw_connection()).driver_connection
        except BaseException:
            if conn is not None:
                self._open.discard(conn)
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
                conn = None
            raise
        finally:
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in list(self._open):
            with contextlib.suppress(Exception):
                await conn.close()
        self._open.clear()


IMPORT_LOCK_TIMEOUT = "5s"
# A chunk's commit wakes the outbox relay only if none did this recently: each wake-up is a relay transaction
# in this process (one per chunk was ~2 µs of CPU per imported task); `_finish` wakes it for the rest.
NOTIFY_INTERVAL = 0.1
DUPLICATE_RETRIES = 5


def existing_hashes_sql(table: str = f"{SCHEMA}.tasks") -> str:
    """Which of the content hashes `$2` the project `$1` already has: one probe of the unique (project, content
    hash) index per hash. Asked as `project_id = $1 AND content_hash = ANY($2)`, the planner took the smaller
    (project, created_at) index on a table without statistics yet (a deployment's first big import) and
    filtered every task of the project against the chunk's hashes, for every chunk."""
    return (f"SELECT h.content_hash FROM unnest($2::bytea[]) AS h(content_hash) CROSS JOIN LATERAL "
            f"(SELECT 1 FROM {table} AS t WHERE t.project_id = $1 AND t.content_hash = h.content_hash LIMIT 1) AS found")


EXISTING_HASHES_SQL = existing_hashes_sql()


async def _insert_tasks(pg: Any, project: Project, result: ChunkResult, keep: list[int] | None, distinct: bool
                        ) -> tuple[list[int] | None, int]:
    """COPY the chunk's tasks (all, or those at `keep`) but those already in the project or earlier in the
    chunk. Returns (the indexes inserted, or None for all; the number of duplicates)."""
    candidates = range(len(result)) if keep is None else keep
    if not candidates:
        return [], 0
    optimistic = distinct  # no two tasks of the chunk alike: COPY them all, the unique index finds the rest
    for _attempt in range(DUPLICATE_RETRIES):
        try:
            if optimistic:
                await _copy_tasks(pg, result, keep)
                return keep, 0
            existing = {r[0] for r in await pg.fetch(
                EXISTING_HASHES_SQL, project.id, [result.content_hashes[i] for i in candidates])}
            fresh, duplicates = [], 0
            for i in candidates:
                content_hash = result.content_hashes[i]
                if content_hash in existing:
                    duplicates += 1
                else:
                    existing.add(content_hash)
                    fresh.append(i)
            if fresh:
                await _copy_tasks(pg, result, fresh)
            return fresh, duplicates
        except (asyncpg.UniqueViolationError, asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name != "uq_tasks_project_content_hash":
                raise
            # Another transaction holds (or just committed) some of these hashes: look them up and try again.
            await pg.execute("ROLLBACK TO SAVEPOINT tasks")
            optimistic = False
    raise ImportAborted("the chunk's tasks kept colliding with a concurrent import of the same content")


async def _copy_tasks(pg: Any, result: ChunkResult, keep: list[int] | None) -> None:
    await pg.copy_to_table("tasks", schema_name=SCHEMA, source=memoryview(result.task_rows(keep)), format="binary",
                           columns=TASK_COPY_COLUMNS)


def _chunk_record_args(ctx: Any, op: ImportOperation, project: Project, row_ctx: RowContext, result: ChunkResult,
                       keep: list[int] | None, errors: list[RowError], state: dict[str, int], last_row: int,
                       duplicates: int, invalid_rows: int, bytes_read: int, notify: bool = True) -> list[Any]:
    """The arguments of `_CHUNK_RECORDS`: the data keys of the inserted tasks, their pseudonyms, the row errors
    (up to the operation's limit), one event (two when the tasks came with single_choice predictions:
    `predictions.imported` for the consensus service) and the checkpoint."""
    now = datetime.now(UTC)
    created = len(result) if keep is None else len(keep)
    inserted = None if keep is None else set(keep)

    def column(values: list) -> list:
        return values if keep is None else [values[i] for i in keep]

    task_ids = column(result.task_ids)
    key_ids: list[str] = []
    scopes: list[str] = []
    versions: list[int] = []
    wrapped_keys: list[bytes] = []
    if created:
        # Group keys (several tasks per key): scope `import-tasks:<operation>`, one row per key in use.
        used = range(len(result.keys)) if keep is None else sorted({result.task_keys[i] for i in keep})
        for key_id, version, wrapped in (result.keys[k] for k in used):
            key_ids.append(key_id)
            scopes.append(f"import-tasks:{op.id}")
            versions.append(version)
            wrapped_keys.append(wrapped)
        for i, key_id, version, wrapped in result.originals:
            if inserted is None or i in inserted:
                key_ids.append(key_id)
                scopes.append(task_scope(result.task_ids[i]))
                versions.append(version)
                wrapped_keys.append(wrapped)
    pseudonym_values: list[str] = []
    pseudonym_tasks: list[str] = []
    for task_id, names in zip(task_ids, column(result.pseudonyms)):
        for name in names:
            pseudonym_values.append(name)
            pseudonym_tasks.append(task_id)
    room = max(0, ctx.settings.import_max_stored_errors - state["stored_errors"])
    stored = errors[:room]
    state["stored_errors"] += len(stored)
    seqs: dict[int, int] = {}
    error_seqs = []
    for err in stored:
        error_seqs.append(seqs.setdefault(err.row, -1) + 1)
        seqs[err.row] += 1
    event_ids: list[str] = []
    event_types: list[str] = []
    envelopes: list[str] = []
    if created:
        occurred = now.isoformat().replace("+00:00", "Z")
        project_id, org_id = str(project.id), str(project.org_id)
        # One announcement per committed chunk: a bulk import of 100k tasks is 100 events, not 100k.
        predictions = _chunk_predictions(result, keep)
        event_ids = new_event_ids(2 if predictions else 1)
        event_types = ["tasks.imported"]
        envelopes = [orjson.dumps({
            "id": event_ids[0], "type": "tasks.imported", "version": 1, "occurred_at": occurred, "producer": "api",
            "org_id": org_id, "project_id": project_id, "request_id": None,
            "payload": {"project_id": project_id, "dataset_id": str(op.id), "task_ids": task_ids, "priority": 0,
                        "overlap": project.overlap, "schema_version": row_ctx.schema_version}}).decode()]
        if predictions:
            event_types.append("predictions.imported")
            envelopes.append(orjson.dumps({
                "id": event_ids[1], "type": "predictions.imported", "version": 1, "occurred_at": occurred,
                "producer": "api", "org_id": org_id, "project_id": project_id, "request_id": None,
                "payload": {"project_id": project_id, "dataset_id": str(op.id),
                            "predictions": predictions}}).decode())
    return [key_ids, scopes, versions, wrapped_keys, pseudonym_values, pseudonym_tasks,
            [e.row for e in stored], error_seqs, [(e.field or None) and e.field[:300] for e in stored],
            [e.message[:2000] for e in stored], event_ids, event_types, now, project.id, op.id,
            events_stream(ctx.settings.stream_prefix, "api"), envelopes, last_row, created, duplicates, invalid_rows,
            bytes_read, float(ctx.settings.import_lease_seconds), notify_channel(ctx.outbox) if notify else None]


def _chunk_predictions(result: ChunkResult, keep: list[int] | None) -> list[dict[str, Any]]:
    """The `predictions.imported` entries of the chunk's inserted tasks (all, or those at `keep`)."""
    if not result.prediction_tasks:
        return []
    inserted = None if keep is None else set(keep)
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
        await session.execute(sa.select(sa.func.pg_notify(notify_channel(ctx.outbox), "")))


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


MAX_STATUS_WAIT = 30.0
STATUS_RECHECK = 0.25  # how often a waiting status request looks at an import another replica runs
FINISHED = ("succeeded", "failed")


async def watch_operation(ctx: Any, principal: Principal, op_id: Any, *, wait: float = 0.0, errors_limit: int = 100,
                          errors_after: int = 0) -> dict[str, Any]:
    """The operation's status; with `wait`, once it has ended or after `wait` seconds, whichever comes first
    (a client waits for the end without polling, and learns of it when it happens). No database connection
    is held while waiting."""
    async with ctx.session_factory() as session:
        view = await operation_status(session, principal, op_id, errors_limit=errors_limit, errors_after=errors_after)
    if wait <= 0 or view["status"] in FINISHED:
        return view
    await _until_finished(ctx, uuid.UUID(view["id"]), min(wait, MAX_STATUS_WAIT))
    async with ctx.session_factory() as session:
        return await operation_status(session, principal, op_id, errors_limit=errors_limit, errors_after=errors_after)


async def _until_finished(ctx: Any, op_id: uuid.UUID, seconds: float) -> None:
    """Returns when the operation has ended or `seconds` have passed. An import this replica runs is awaited
    directly; one another replica runs is looked up every quarter second."""
    job = next((t for t in ctx.extras.get("import_jobs", ()) if t.get_name() == f"import-{op_id}"), None)
    if job is not None:
        await asyncio.wait({job}, timeout=seconds)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(STATUS_RECHECK, left))
        async with ctx.session_factory() as session:
            status = (await session.execute(sa.select(ImportOperation.status)
                                            .where(ImportOperation.id == op_id))).scalar_one_or_none()
        if status is None or status in FINISHED:
            return


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
