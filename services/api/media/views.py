"""Media routes: translate HTTP to `services.api.media.service` and back."""

from __future__ import annotations

import uuid

from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from services.api.media import service
from services.api.media.audit import Actor, RequestMeta
from services.api.media.links import link_query
from services.api.media.models import Media
from services.api.media.multipart import MultipartReader
from services.api.media.policy import can_write_media
from services.api.media.ranges import RangeNotSatisfiable, if_range_allows, parse_range
from services.api.media.schemas import BatchOut, BucketImportIn, LinkIn, LinkOut, MediaOut
from shared.app import ServiceContext, get_context
from shared.auth import Principal, Role, current_principal, public, require
from shared.errors import BadRequest, PayloadTooLarge, ProblemError

router = APIRouter(tags=["media"])

MANAGERS = {Role.ORG_ADMIN, Role.PROJECT_MANAGER}
FILE_FIELD = "file"
MULTIPART_OVERHEAD = 64 * 1024


def content_disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_").replace('"', "_")
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _media_url(request: Request, media_id: uuid.UUID | str) -> str:
    return str(request.url_for("get_media", media_id=str(media_id)).path)


def _media_out(request: Request, media: Media, duplicate: bool) -> MediaOut:
    fields = {name: getattr(media, name) for name in MediaOut.model_fields if hasattr(media, name)}
    return MediaOut(**fields, duplicate=duplicate, url=_media_url(request, media.id))


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes", limit=limit)


async def _single_file(request: Request):  # noqa: ANN202
    reader = MultipartReader(request.stream(), request.headers.get("content-type"))
    async for part in reader.files():
        if part.field_name != FILE_FIELD:
            raise BadRequest(f"unexpected file field {part.field_name!r}; send the file as {FILE_FIELD!r}")
        return reader, part
    raise BadRequest(f"no file in the multipart body; send it as field {FILE_FIELD!r}", type="missing-file")


def _optional_uuid(value: str | None, name: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{name} must be a UUID") from None


@router.post("/projects/{project_id}/media", status_code=201, response_model=MediaOut,
             summary="Upload one media file (multipart field 'file'), streamed and encrypted",
             responses={200: {"description": "identical content already existed: the existing media"},
                        413: {"description": "over the size cap"},
                        415: {"description": "content does not match the declared type, or unsupported"}})
async def upload_media(request: Request, project_id: uuid.UUID,
                       dataset_id: str | None = Query(default=None), task_id: str | None = Query(default=None),
                       principal: Principal = require("media.upload", roles=MANAGERS,
                                                      project_roles={Role.PROJECT_MANAGER},
                                                      project_param="project_id")) -> Response:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    project, sealed = await service.authorize_project(ctx, principal, str(project_id), can_write_media,
                                                      "media.upload", meta)
    _check_declared_length(request, ctx.settings.max_media_bytes)
    task = _optional_uuid(task_id, "task_id")
    await service.check_task_in_project(ctx, project, task)
    _, part = await _single_file(request)
    result = await service.ingest_media(
        ctx, project, sealed, service.IngestSource(part.chunks, part.filename, part.content_type),
        actor=Actor(principal), meta=meta, dataset_id=_optional_uuid(dataset_id, "dataset_id"), task_id=task)
    body = _media_out(request, result.media, duplicate=not result.created)
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if result.created else 200,
                        headers={"Location": body.url})


@router.post("/projects/{project_id}/media:import-archive", response_model=BatchOut,
             summary="Upload a zip of media; each member is checked and stored like a single upload",
             responses={413: {"description": "archive too large or a decompression bomb"}})
async def upload_archive(request: Request, project_id: uuid.UUID, dataset_id: str | None = Query(default=None),
                         principal: Principal = require("media.upload_archive", roles=MANAGERS,
                                                        project_roles={Role.PROJECT_MANAGER},
                                                        project_param="project_id")) -> BatchOut:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    project, sealed = await service.authorize_project(ctx, principal, str(project_id), can_write_media,
                                                      "media.upload", meta)
    _check_declared_length(request, ctx.settings.max_media_bytes)
    _, part = await _single_file(request)
    report = await service.ingest_archive(ctx, project, sealed, part.chunks, filename=part.filename,
                                          declared_type=part.content_type, actor=Actor(principal), meta=meta,
                                          dataset_id=_optional_uuid(dataset_id, "dataset_id"))
    return _batch_out(report)


@router.post("/projects/{project_id}/media:import-from-bucket", response_model=BatchOut,
             summary="Import media by reference: stream every object under bucket/prefix through the pipeline")
async def import_from_bucket(request: Request, project_id: uuid.UUID, body: BucketImportIn,
                             principal: Principal = require("media.import_from_bucket", roles=MANAGERS,
                                                            project_roles={Role.PROJECT_MANAGER},
                                                            project_param="project_id")) -> BatchOut:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    project, sealed = await service.authorize_project(ctx, principal, str(project_id), can_write_media,
                                                      "media.import", meta)
    report = await service.import_from_bucket(ctx, project, sealed, bucket=body.bucket, prefix=body.prefix,
                                              actor=Actor(principal), meta=meta, dataset_id=body.dataset_id,
                                              max_objects=body.max_objects)
    return _batch_out(report)


def _batch_out(report: service.BatchReport) -> BatchOut:
    return BatchOut(created=report.created, duplicates=report.duplicates, failed=report.failed,
                    truncated=report.truncated, items=[vars(i) for i in report.items])


_READ_POLICY = public("accepts a signed link (exp, kv, by, sig) instead of a bearer token; "
                      "bearer callers are checked by services.api.media.policy")


@router.head("/media/{media_id}", name="head_media", dependencies=[_READ_POLICY],
             summary="Media headers (size, type, ETag, ranges) without the body; not audited as a read")
@router.get("/media/{media_id}", name="get_media", dependencies=[_READ_POLICY],
            summary="Stream media, decrypted; HTTP Range supported; bearer token or signed link",
            responses={206: {"description": "the requested byte range"},
                       410: {"description": "the media was erased"},
                       416: {"description": "range not satisfiable"}})
async def get_media(request: Request, media_id: str) -> Response:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    query = request.query_params
    head_only = request.method == "HEAD"
    range_header = request.headers.get("range")
    details = {"range": range_header[:100]} if range_header else None
    if "sig" in query:
        link = {k: query.get(k) for k in ("exp", "kv", "by", "sig")}
        handle, _ = await service.authorize_media_read(ctx, media_id, link=link, meta=meta, details=details,
                                                       audited=not head_only)
    else:
        principal = await current_principal(request)
        handle, _ = await service.authorize_media_read(ctx, media_id, principal=principal, meta=meta,
                                                       details=details, audited=not head_only)
    headers = {
        "Accept-Ranges": "bytes", "ETag": handle.etag,
        "Content-Disposition": content_disposition(handle.filename),
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    try:
        wanted = parse_range(range_header, handle.size) if if_range_allows(request.headers.get("if-range"),
                                                                           handle.etag) else None
    except RangeNotSatisfiable as exc:
        raise ProblemError(str(exc), status=416, type="range-not-satisfiable", title="Range not satisfiable",
                           headers={"Content-Range": f"bytes */{exc.size}", **headers}) from None
    if wanted is None:
        status, start, end, length = 200, 0, None, handle.size
    else:
        status, start, end, length = 206, wanted.start, wanted.end + 1, wanted.length
        headers["Content-Range"] = wanted.content_range(handle.size)
    headers["Content-Length"] = str(length)
    if head_only:
        return Response(status_code=status, headers=headers, media_type=handle.content_type)
    chunks = await service.open_media(ctx, handle, start, end)
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=handle.content_type)


@router.post("/media/{media_id}/links", response_model=LinkOut, status_code=201,
             summary="Mint a short-lived signed link to GET /media/{id} that works without a token")
async def create_link(request: Request, media_id: str, body: LinkIn | None = None,
                      principal: Principal = require("media.link", roles="any", workers=True,
                                                     scopes={"media:read"}, resource_params=["media_id"])
                      ) -> LinkOut:
    ctx: ServiceContext = get_context(request)
    minted = await service.mint_link(ctx, principal, media_id, body.ttl_seconds if body else None,
                                     RequestMeta.from_request(request))
    base = (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")
    url = f"{base}{_media_url(request, minted['media_id'])}?{link_query(minted['params'])}"
    return LinkOut(url=url, expires_at=minted["expires_at"], ttl_seconds=minted["ttl_seconds"])


@router.delete("/media/{media_id}", status_code=204,
               summary="Delete media: its data key is destroyed (crypto-shredded), then the ciphertext")
async def delete_media(request: Request, media_id: str,
                       principal: Principal = require("media.delete", roles="any",
                                                      resource_params=["media_id"])) -> Response:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    handle, _ = await service.authorize_media_read(ctx, media_id, principal=principal, meta=meta,
                                                   action="media.delete", audited=False)
    project, _ = await service.authorize_project(ctx, principal, handle.project_id, can_write_media,
                                                 "media.delete", meta)
    await service.delete_media_rows(ctx, [uuid.UUID(handle.id)], actor=Actor(principal), meta=meta)
    return Response(status_code=204)

