"""Media: one pipeline for every way bytes arrive (upload, zip member, bucket object), and access to them.

Pipeline: name check → sniff the first bytes → type check against what was declared → size cap →
(images) metadata stripped → keyed content hash → envelope-encrypted into the blob store under a
generated key with its own data key (scope `media:<id>`) → row committed with an audit event. A duplicate
(same content hash in the project) is detected after streaming: the new copy is shredded and the
existing media is returned.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.keys.service import keyring, project_keys
from services.api.media import audit
from services.api.media.archives import ArchiveLimits, DecompressionBomb, ExpansionBudget, inspect_archive
from services.api.media.audit import Actor, RequestMeta
from services.api.media.links import sign_link, verify_link
from services.api.media.models import Media
from services.api.media.names import UnsafeFileName, check_member_path, display_name
from services.api.media.policy import can_read_media
from services.api.media.sniff import IMAGES, SNIFF_BYTES, SUPPORTED, ZIP, resolve_type, sniff
from services.api.media.spool import EncryptedSpool
from services.api.projects.models import Project
from shared.app import ServiceContext
from shared.auth.principal import Principal
from shared.crypto import DecryptionError, EncryptedBlobStore, KeyDestroyed
from shared.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, ProblemError, ServiceUnavailable
from shared.storage import BlobStore, InvalidObjectKey, validate_prefix
from services.api.ids import uuid_or_404 as _uuid

log = logging.getLogger("quorum.api.media")
MEDIA_PREFIX = "media"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class MediaGone(ProblemError):
    status, type, title = 410, "media-erased", "Media was erased"


class MediaUnreadable(ProblemError):
    status, type, title = 500, "media-ciphertext-invalid", "Stored media failed authentication"


# -- context ----------------------------------------------------------------------------------------

def blob_store(ctx: ServiceContext) -> EncryptedBlobStore:
    store = ctx.extras.get("blob_store")
    if not isinstance(store, EncryptedBlobStore):
        raise ServiceUnavailable("encrypted object storage is not configured")
    return store


def media_scope(media_id: uuid.UUID | str) -> str:
    return f"media:{media_id}"


def media_blob_key(project_id: uuid.UUID | str, media_id: uuid.UUID | str) -> str:
    return f"{MEDIA_PREFIX}/{project_id}/{media_id}"


@dataclass(frozen=True)
class ProjectRef:
    id: str
    org_id: str


async def load_project(session: AsyncSession, project_id: uuid.UUID | str) -> Project:
    """404 for unknown, malformed or archived projects."""
    project = await session.get(Project, _uuid(project_id, "project"))
    if project is None or project.archived_at is not None:
        raise NotFound(f"project {project_id} not found")
    return project


async def get_project(session: AsyncSession, project_id: uuid.UUID | str) -> tuple[ProjectRef, str | None]:
    """(ProjectRef, sealed project secret)."""
    project = await load_project(session, project_id)
    return ProjectRef(str(project.id), str(project.org_id)), project.secret_sealed




async def authorize_project(ctx: ServiceContext, principal: Principal, project_id: str, check: Callable,
                            what: str, meta: RequestMeta | None = None) -> tuple[ProjectRef, str | None]:
    """Load the project and apply `check`; a denial is audited (committed) before the 403/404 is raised.
    Callers from another organisation get 404: they do not learn the project exists."""
    async with ctx.session_factory() as session, session.begin():
        project = await load_project(session, project_id)
        decision = check(principal, project)
        ref = ProjectRef(str(project.id), str(project.org_id))
        if decision:
            return ref, project.secret_sealed
        await audit.record(session, ctx, actor=Actor(principal), org_id=ref.org_id, project_id=ref.id,
                           resource_type="project", resource_id=ref.id, action=what, outcome="denied",
                           meta=meta, reason=decision.reason)
    if principal.data_org_id != ref.org_id:
        raise NotFound(f"project {project_id} not found")
    raise Forbidden(f"not allowed to {what.replace('.', ' ')}: {decision.reason}")


async def check_task_in_project(ctx: ServiceContext, project: ProjectRef, task_id: uuid.UUID | None) -> None:
    """Media attached to a task must belong to the task's project (erasure of the task finds it there)."""
    if task_id is None:
        return
    from services.api.tasks.models import Task

    async with ctx.session_factory() as session:
        found = (await session.execute(sa.select(Task.id).where(
            Task.id == task_id, Task.project_id == uuid.UUID(project.id), Task.erased_at.is_(None)))).first()
    if found is None:
        raise NotFound(f"task {task_id} not found in this project")


# -- the ingest pipeline -----------------------------------------------------------------------------

@dataclass
class IngestSource:
    chunks: AsyncIterable[bytes]
    filename: str | None
    declared_type: str | None = None
    source: str = "upload"  # upload | archive | bucket
    source_ref: str | None = None


@dataclass
class IngestResult:
    media: Media
    created: bool  # False: a duplicate of existing media (returned instead)


@dataclass
class Limits:
    max_bytes: int
    max_image_bytes: int

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(settings.max_media_bytes, settings.max_image_bytes)


async def _split_head(chunks: AsyncIterable[bytes], want: int) -> tuple[bytes, AsyncIterator[bytes], bool]:
    """Read at least `want` bytes (or all there is); return (head, the rest, reached_eof)."""
    iterator = chunks.__aiter__()
    head = bytearray()
    while len(head) < want:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return bytes(head), _empty(), True
        head += chunk
    return bytes(head), iterator, False


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover


async def _chain(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk


async def _capped(chunks: AsyncIterable[bytes], limit: int, what: str) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes", limit=limit)
        yield chunk


class _Hasher:
    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self.size = 0

    async def wrap(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self._mac.update(chunk)
            self.size += len(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._mac.hexdigest()


MAX_IMAGE_PIXELS = 100_000_000


async def _strip_image(content_type: str, chunks: AsyncIterable[bytes], limit: int) -> tuple[bytes, list[str]]:
    """Images are held whole (bounded by `limit`) while their metadata is removed: JPEG/PNG/WebP losslessly
    at container level (`shared.pii.images`), GIF/TIFF by re-writing the frames without any metadata."""
    data = bytearray()
    async for chunk in _capped(chunks, limit, "image"):
        data += chunk
    original = bytes(data)
    del data
    from shared.pii.images import SUPPORTED_TYPES, strip_image_metadata

    if content_type in SUPPORTED_TYPES:
        stripped = await asyncio.to_thread(strip_image_metadata, original, content_type)
    else:
        stripped = await asyncio.to_thread(_rewrite_without_metadata, original, content_type)
    return stripped, (["metadata"] if stripped != original else [])


def _rewrite_without_metadata(data: bytes, content_type: str) -> bytes:
    import io

    from PIL import Image, ImageSequence, UnidentifiedImageError

    from services.api.media.sniff import GIF
    from shared.pii.images import ImageMetadataError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise PayloadTooLarge(f"image of {width}x{height} pixels is larger than {MAX_IMAGE_PIXELS} pixels")
            frames = []
            for frame in ImageSequence.Iterator(image):
                clean = frame.copy()
                clean.info = {k: v for k, v in frame.info.items() if k in ("duration", "loop", "transparency")}
                frames.append(clean)
            out = io.BytesIO()
            fmt = "GIF" if content_type == GIF else "TIFF"
            options = {"compression": "tiff_deflate"} if fmt == "TIFF" else {}
            frames[0].save(out, format=fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageMetadataError(f"image could not be read ({type(exc).__name__})") from None


async def ingest_media(ctx: ServiceContext, project: ProjectRef, sealed_secret: str | None, src: IngestSource,
                       *, actor: Actor, meta: RequestMeta | None = None, dataset_id: uuid.UUID | None = None,
                       task_id: uuid.UUID | None = None, limits: Limits | None = None,
                       allowed: frozenset[str] = SUPPORTED) -> IngestResult:
    limits = limits or Limits.from_settings(ctx.settings)
    store = blob_store(ctx)
    name = display_name(src.filename)
    head, rest, eof = await _split_head(src.chunks, SNIFF_BYTES)
    if not head:
        raise BadRequest(f"file {name!r} is empty", type="empty-file")
    content_type = resolve_type(sniff(head, complete=eof), src.declared_type, src.filename, allowed=allowed)
    body: AsyncIterable[bytes] = _capped(_chain(head, rest), limits.max_bytes, f"file {name!r}")
    removed: list[str] = []
    if content_type in IMAGES:
        stripped, removed = await _strip_image(content_type, body, min(limits.max_image_bytes, limits.max_bytes))
        body = _chain(stripped, _empty())
    hasher = _Hasher(_content_hash_key(ctx, project, sealed_secret))
    media_id = uuid.uuid4()
    key = media_blob_key(project.id, media_id)
    await store.put(key, hasher.wrap(body), content_type="application/octet-stream", scope=media_scope(media_id))
    try:
        data_key_id = await store.data_key_id(key)
        async with ctx.session_factory() as session, session.begin():
            values = dict(id=media_id, org_id=uuid.UUID(project.org_id), project_id=uuid.UUID(project.id),
                          dataset_id=dataset_id, task_id=task_id, filename=name, content_type=content_type,
                          size_bytes=hasher.size, content_hash=hasher.hexdigest(), blob_key=key,
                          data_key_id=data_key_id, source=src.source, source_ref=src.source_ref,
                          metadata_removed=removed, created_by=actor.id)
            inserted = (await session.execute(
                pg_insert(Media).values(**values)
                .on_conflict_do_nothing(index_elements=["project_id", "content_hash"])
                .returning(Media.id))).scalar_one_or_none()
            if inserted is None:
                existing = (await session.execute(sa.select(Media).where(
                    Media.project_id == uuid.UUID(project.id), Media.content_hash == values["content_hash"]))
                ).scalar_one()
            else:
                existing = None
            media = existing or (await session.get(Media, media_id))
            await audit.record(session, ctx, actor=actor, org_id=project.org_id, project_id=project.id,
                               resource_type="media", resource_id=str(media.id), action="media.upload",
                               outcome="success", meta=meta,
                               details={"duplicate": existing is not None, "source": src.source,
                                        "content_type": content_type, "size_bytes": hasher.size,
                                        "metadata_removed": removed})
    except BaseException:
        await store.delete(key)  # never leave an orphan ciphertext (its key is shredded with it)
        raise
    if existing is not None:
        await store.delete(key)
        return IngestResult(existing, created=False)
    return IngestResult(media, created=True)


def _content_hash_key(ctx: ServiceContext, project: ProjectRef, sealed_secret: str | None) -> bytes:
    """Dedup hashes are keyed by the project's secret: not linkable across projects, not a plain-hash oracle."""
    if sealed_secret:
        return project_keys(keyring(ctx), project.id, sealed_secret).content_hash_key
    ring = keyring(ctx)  # a project without a secret (made outside the projects service): still keyed
    return ring.derive(ring.active_version, f"quorum/media-hash/v1/{project.id}".encode())


# -- zip archives ------------------------------------------------------------------------------------

@dataclass
class ItemOutcome:
    name: str
    media_id: str | None = None
    duplicate: bool = False
    content_type: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class BatchReport:
    items: list[ItemOutcome] = field(default_factory=list)
    truncated: bool = False

    @property
    def created(self) -> int:
        return sum(1 for i in self.items if i.media_id and not i.duplicate)

    @property
    def duplicates(self) -> int:
        return sum(1 for i in self.items if i.duplicate)

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i.error)


def _record_stored(outcome: Any, result: Any) -> None:
    outcome.media_id = str(result.media.id)
    outcome.duplicate = not result.created
    outcome.content_type = result.media.content_type


def _problem_dict(exc: ProblemError) -> dict[str, Any]:
    return {"status": exc.status, "type": exc.type, "title": exc.title, "detail": exc.detail}


def archive_limits(settings: Any) -> ArchiveLimits:
    return ArchiveLimits(max_members=settings.archive_max_members,
                         max_total_bytes=settings.archive_max_total_bytes,
                         max_member_bytes=settings.max_media_bytes, max_ratio=settings.archive_max_ratio)


async def _sync_iter_to_async(make_iter: Callable[[], Any]) -> AsyncIterator[bytes]:
    iterator = await asyncio.to_thread(make_iter)
    sentinel = object()
    while True:
        chunk = await asyncio.to_thread(next, iterator, sentinel)
        if chunk is sentinel:
            return
        yield chunk


async def ingest_archive(ctx: ServiceContext, project: ProjectRef, sealed_secret: str | None,
                         chunks: AsyncIterable[bytes], *, filename: str | None, declared_type: str | None,
                         actor: Actor, meta: RequestMeta | None = None,
                         dataset_id: uuid.UUID | None = None) -> BatchReport:
    """Expand a zip of media; every member goes through `ingest_media`. A decompression bomb aborts the
    whole archive and removes what it had already stored."""
    settings = ctx.settings
    limits = archive_limits(settings)
    name = display_name(filename, "archive.zip")
    head, rest, eof = await _split_head(chunks, SNIFF_BYTES)
    if not head:
        raise BadRequest(f"archive {name!r} is empty", type="empty-file")
    resolve_type(sniff(head, complete=eof), declared_type, filename, allowed=frozenset({ZIP}))
    spool = EncryptedSpool()
    report = BatchReport()
    try:
        async for chunk in _capped(_chain(head, rest), settings.max_media_bytes, f"archive {name!r}"):
            await asyncio.to_thread(spool.append, chunk)
        archive, members = await asyncio.to_thread(inspect_archive, spool, limits)
        budget = ExpansionBudget(limits)
        try:
            for member in members:
                outcome = ItemOutcome(name=member.name)
                report.items.append(outcome)
                src = IngestSource(_sync_iter_to_async(lambda m=member: budget.read_member(archive, m)),
                                   filename=member.name, source="archive", source_ref=f"{name}:{member.name}")
                try:
                    result = await ingest_media(ctx, project, sealed_secret, src, actor=actor, meta=meta,
                                                dataset_id=dataset_id)
                except DecompressionBomb:
                    raise
                except ProblemError as exc:
                    outcome.error = _problem_dict(exc)
                    continue
                _record_stored(outcome, result)
        except DecompressionBomb:
            created = [uuid.UUID(i.media_id) for i in report.items if i.media_id and not i.duplicate]
            await delete_media_rows(ctx, created, actor=actor, meta=meta, reason="archive rejected")
            raise
        finally:
            archive.close()
    finally:
        spool.close()
    return report


# -- media by reference (a bucket/prefix on the S3 API) ------------------------------------------------

def source_bucket_store(settings: Any, bucket: str) -> BlobStore:
    from shared.storage import S3BlobStore

    if not settings.s3_endpoint:
        raise ServiceUnavailable("importing media by reference needs an S3 endpoint (QUORUM_S3_ENDPOINT)")
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    return S3BlobStore(settings.s3_endpoint, bucket=bucket, access_key=settings.s3_access_key,
                       secret_key=secret, secure=settings.s3_secure, region=settings.s3_region,
                       create_bucket=False)


def check_bucket_allowed(settings: Any, bucket: str) -> None:
    if not _BUCKET_NAME.match(bucket or "") or ".." in bucket:
        raise BadRequest(f"{bucket!r} is not a valid bucket name", type="invalid-bucket")
    if bucket == settings.s3_bucket:
        raise Forbidden("media cannot be imported from Quorum's own storage bucket")
    allowed = settings.media_import_buckets
    if allowed and bucket not in allowed:
        raise Forbidden(f"bucket {bucket!r} is not in the configured import allowlist")


async def _require_bucket(source: Any, bucket: str) -> None:
    from shared.storage import StorageUnavailable

    try:
        await source.ping()
    except StorageUnavailable as exc:
        if "does not exist" in str(exc):
            raise NotFound(f"bucket {bucket!r} does not exist or is not readable") from None
        raise


async def import_from_bucket(ctx: ServiceContext, project: ProjectRef, sealed_secret: str | None, *,
                             bucket: str, prefix: str, actor: Actor, meta: RequestMeta | None = None,
                             dataset_id: uuid.UUID | None = None, max_objects: int | None = None,
                             source_store: Any = None) -> BatchReport:
    settings = ctx.settings
    check_bucket_allowed(settings, bucket)
    try:
        validate_prefix(prefix)
    except InvalidObjectKey as exc:
        raise UnsafeFileName(f"prefix {prefix!r} is not allowed: {exc.reason}", name=prefix) from None
    if prefix:
        check_member_path(prefix.rstrip("/") or "x")
    limit = min(max_objects or settings.media_import_max_objects, settings.media_import_max_objects)
    source = source_store or source_bucket_store(settings, bucket)
    report = BatchReport()
    try:
        await _require_bucket(source, bucket)
        keys: list[str] = []
        async for key in source.list(prefix):
            if len(keys) >= limit:
                report.truncated = True
                break
            keys.append(key)
        for key in keys:
            outcome = ItemOutcome(name=key)
            report.items.append(outcome)
            try:
                check_member_path(key)
                src = IngestSource(source.open_range(key), filename=key, source="bucket",
                                   source_ref=f"s3://{bucket}/{key}")
                result = await ingest_media(ctx, project, sealed_secret, src, actor=actor, meta=meta,
                                            dataset_id=dataset_id)
            except InvalidObjectKey as exc:
                outcome.error = _problem_dict(UnsafeFileName(f"object key {key!r} is not allowed: {exc.reason}"))
                continue
            except ProblemError as exc:
                outcome.error = _problem_dict(exc)
                continue
            _record_stored(outcome, result)
    except Exception as exc:
        from shared.storage import StorageUnavailable

        if isinstance(exc, StorageUnavailable):
            raise ServiceUnavailable(f"source bucket {bucket!r} is not reachable: {exc}") from None
        raise
    finally:
        if source_store is None:
            await source.aclose()
    return report


# -- access ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaHandle:
    """A media row the caller may read, with what is needed to answer the request."""

    id: str
    project_id: str
    org_id: str
    filename: str
    content_type: str
    size: int
    etag: str
    blob_key: str


async def _load_media(session: AsyncSession, media_id: str) -> Media:
    mid = _uuid(media_id, "media")
    media = await session.get(Media, mid)
    if media is None:
        raise NotFound(f"media {media_id} not found")
    return media


def _handle(media: Media) -> MediaHandle:
    return MediaHandle(id=str(media.id), project_id=str(media.project_id), org_id=str(media.org_id),
                       filename=media.filename, content_type=media.content_type, size=media.size_bytes,
                       etag=f'"{media.content_hash[:32]}"', blob_key=media.blob_key)


async def authorize_media_read(ctx: ServiceContext, media_id: str, *, principal: Principal | None = None,
                               link: dict[str, str | None] | None = None, meta: RequestMeta | None = None,
                               action: str = "media.read", details: dict[str, Any] | None = None,
                               audited: bool = True) -> tuple[MediaHandle, Actor]:
    """Check the caller (bearer principal or signed link) may read this media and audit the outcome (in the
    same transaction when allowed; committed before the error when not). Other organisations get 404,
    not 403: they do not learn the media exists."""
    if principal is None and link is None:
        raise Forbidden("no credentials")
    async with ctx.session_factory() as session, session.begin():
        media = await _load_media(session, media_id)
        project_row = await session.get(Project, media.project_id)
        project = ProjectRef(str(media.project_id), str(media.org_id))
        if principal is not None:
            actor = Actor(principal)
            decision = can_read_media(principal, project_row)
            failure: ProblemError | None = None
            if not decision:
                failure = Forbidden(f"not allowed to read media {media_id}: {decision.reason}")
                if principal.data_org_id != project.org_id:
                    failure = NotFound(f"media {media_id} not found")
        else:
            actor = Actor(link_issued_by=(link or {}).get("by"))
            failure = None
            try:
                verify_link(keyring(ctx), str(media.id), link or {})
            except ProblemError as exc:
                failure = exc
        if failure is None:
            if audited:
                await audit.record(session, ctx, actor=actor, org_id=project.org_id, project_id=project.id,
                                   resource_type="media", resource_id=str(media.id), action=action,
                                   outcome="success", meta=meta, details=details)
            return _handle(media), actor
    async with ctx.session_factory() as session, session.begin():
        await audit.record(session, ctx, actor=actor, org_id=project.org_id, project_id=project.id,
                           resource_type="media", resource_id=str(media.id), action=action, outcome="denied",
                           meta=meta, reason=failure.detail, details=details)
    raise failure


async def open_media(ctx: ServiceContext, handle: MediaHandle, start: int = 0,
                     end: int | None = None) -> AsyncIterator[bytes]:
    """Plaintext `[start, end)` of the media, decrypted on the fly. The first chunk is read before this
    returns, so a shredded key or a corrupt object fails as a clean error instead of a cut response; a
    stored object shorter than its row says (truncated) fails too, never a silently short body."""
    expected = (handle.size if end is None else min(end, handle.size)) - start
    stream = blob_store(ctx).open_range(handle.blob_key, start, end).__aiter__()
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        if expected > 0:
            raise _unreadable(handle) from None
        return _empty()
    except KeyDestroyed:
        raise MediaGone(f"media {handle.id} was erased; its data can no longer be decrypted") from None
    except DecryptionError:
        raise _unreadable(handle) from None
    return _exactly(_chain(first, stream), expected, handle)


def _unreadable(handle: MediaHandle) -> MediaUnreadable:
    log.error("stored media failed authentication or is truncated", extra={"media_id": handle.id})
    return MediaUnreadable(f"media {handle.id} is damaged, truncated or was tampered with; not returned")


async def _exactly(chunks: AsyncIterator[bytes], expected: int, handle: MediaHandle) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > expected:
            raise _unreadable(handle)
        yield chunk
    if seen != expected:
        raise _unreadable(handle)  # headers are out already: the connection is cut short, never "complete"


async def mint_link(ctx: ServiceContext, principal: Principal, media_id: str, ttl_seconds: int | None,
                    meta: RequestMeta | None = None) -> dict[str, Any]:
    settings = ctx.settings
    ttl = ttl_seconds or settings.media_link_ttl_seconds
    if ttl < 1 or ttl > settings.media_link_max_ttl_seconds:
        raise BadRequest(f"ttl_seconds must be between 1 and {settings.media_link_max_ttl_seconds}",
                         type="invalid-ttl")
    handle, _ = await authorize_media_read(ctx, media_id, principal=principal, meta=meta, action="media.link",
                                           details={"ttl_seconds": ttl})
    params = sign_link(keyring(ctx), handle.id, principal.subject, ttl)
    return {"media_id": handle.id, "params": params, "expires_at": int(params["exp"]), "ttl_seconds": ttl}


# -- deletion (used by erasure too) -----------------------------------------------------------------

async def delete_media_rows(ctx: ServiceContext, media_ids: list[uuid.UUID], *, actor: Actor,
                            meta: RequestMeta | None = None, reason: str = "deleted") -> tuple[int, int]:
    """Shred each media's data key, delete its ciphertext and its row. Returns (media deleted, keys shredded)."""
    if not media_ids:
        return 0, 0
    store = blob_store(ctx)
    from services.api.keys.service import data_key_store

    keys = data_key_store(ctx)
    async with ctx.session_factory() as session, session.begin():
        rows = (await session.execute(sa.select(Media).where(Media.id.in_(media_ids)))).scalars().all()
        for media in rows:
            await keys.destroy(media.data_key_id, session=session)
            await keys.destroy_scope(media_scope(media.id), session=session)
            await session.delete(media)
            await audit.record(session, ctx, actor=actor, org_id=str(media.org_id),
                               project_id=str(media.project_id), resource_type="media",
                               resource_id=str(media.id), action="media.delete", outcome="success", meta=meta,
                               reason=reason)
    for media in rows:
        await store.inner.delete(media.blob_key)  # the key is already gone; this only frees the space
    return len(rows), len(rows)
