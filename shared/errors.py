"""RFC 9457 problem details: every error a client sees is `application/problem+json`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.observability import current_request_id

log = logging.getLogger("quorum.errors")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://quorum.dev/problems/"


class ProblemError(Exception):
    """Raise anywhere below a route; the app renders it as problem+json."""

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, *, status: int | None = None, type: str | None = None,
                 title: str | None = None, headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extensions = extensions


class BadRequest(ProblemError):
    pass


class Unauthorized(ProblemError):
    status, type, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="quorum"'})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, type, title = 403, "forbidden", "Not allowed"


class NotFound(ProblemError):
    status, type, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, type, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ProblemError):
    status, type, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ProblemError):
    status, type, title = 415, "unsupported-media-type", "Unsupported media type"


class Unprocessable(ProblemError):
    status, type, title = 422, "validation-error", "Request is not valid"


class TooManyRequests(ProblemError):
    status, type, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, int(retry_after)))})
        super().__init__(detail, **kw)


class ServiceUnavailable(ProblemError):
    status, type, title = 503, "service-unavailable", "Service unavailable"


def problem_response(status: int, *, type: str, title: str, detail: str | None = None,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        errors.append({
            "pointer": "/" + "/".join(str(p) for p in err.get("loc", ())),
            "detail": err.get("msg", "invalid"),
            "type": err.get("type", "invalid"),
        })
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, type=exc.type, title=exc.title, detail=exc.detail,
                                instance=request.url.path, headers=exc.headers, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        names = ", ".join(e["pointer"] for e in errors[:5])
        return problem_response(422, type="validation-error", title="Request is not valid",
                                detail=f"Invalid or missing: {names}", instance=request.url.path,
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(exc.status_code, type=title.lower().replace(" ", "-"), title=title,
                                detail=detail, instance=request.url.path, headers=getattr(exc, "headers", None))

    for exc_type, (status, type_, title) in _library_errors().items():
        app.add_exception_handler(exc_type, _library_handler(status, type_, title))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(500, type="internal-error", title="Internal server error",
                                detail="The server failed to handle this request; quote the request id.",
                                instance=request.url.path)


def _library_errors() -> dict[type[Exception], tuple[int, str, str]]:
    """Errors raised by shared libraries below the routes, with the status a client should see."""
    from shared.crypto.errors import DecryptionError, KeyDestroyed
    from shared.storage.errors import InvalidObjectKey, ObjectKeyConflict, ObjectNotFound, StorageUnavailable

    return {
        ObjectKeyConflict: (409, "object-key-conflict", "Object key conflicts with an existing object"),
        InvalidObjectKey: (400, "invalid-object-key", "Invalid object key or file name"),
        ObjectNotFound: (404, "not-found", "Not found"),
        StorageUnavailable: (503, "storage-unavailable", "Object storage unavailable"),
        KeyDestroyed: (410, "erased", "This data has been erased"),
        DecryptionError: (500, "integrity-error", "Stored data failed its integrity check"),
    }


def _library_handler(status: int, type_: str, title: str):  # noqa: ANN202
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if status >= 500:
            log.error("%s at %s: %s", title, request.url.path, type(exc).__name__)
        detail = str(exc) if status < 500 else None
        return problem_response(status, type=type_, title=title, detail=detail, instance=request.url.path)

    return handle
