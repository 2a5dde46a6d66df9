"""Streaming multipart/form-data: the file part flows to storage chunk by chunk as the request arrives.

Starlette's `request.form()` spools uploads to a temporary file in the clear; this reader never holds
more than one network chunk of a file and never writes it anywhere but where the caller sends it.
Small text fields that come before the file are collected (bounded).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from shared.errors import BadRequest, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


@dataclass
class FilePart:
    field_name: str
    filename: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]


@dataclass
class _State:
    events: deque = field(default_factory=deque)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    header_bytes: int = 0


class MultipartReader:
    """`async for part in reader.files()` — each `FilePart.chunks` must be drained before the next part."""

    def __init__(self, body: AsyncIterator[bytes], content_type_header: str | None) -> None:
        ctype, params = parse_options_header(content_type_header or "")
        if ctype != b"multipart/form-data" or not params.get(b"boundary"):
            raise BadRequest("expected a multipart/form-data body with a boundary",
                             type="expected-multipart")
        self._body = body
        self._state = _State()
        self._parser = MultipartParser(params[b"boundary"], callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        })
        self.fields: dict[str, str] = {}
        self._finished = False

    # -- parser callbacks: only queue events ---------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._state.headers = {}
        self._state.header_bytes = 0

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._state.header_field += data[start:end]
        self._count_header(end - start)

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._state.header_value += data[start:end]
        self._count_header(end - start)

    def _count_header(self, n: int) -> None:
        self._state.header_bytes += n
        if self._state.header_bytes > MAX_HEADER_BYTES:
            raise BadRequest("multipart part headers are too large")

    def _on_header_end(self) -> None:
        name = bytes(self._state.header_field).decode("latin-1").strip().lower()
        self._state.headers[name] = bytes(self._state.header_value)
        self._state.header_field.clear()
        self._state.header_value.clear()

    def _on_headers_finished(self) -> None:
        self._state.events.append(("part", dict(self._state.headers)))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._state.events.append(("data", bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self._state.events.append(("end", None))

    # -- consumption ---------------------------------------------------------------------------------

    async def _events(self) -> AsyncIterator[tuple[str, object]]:
        while True:
            while self._state.events:
                yield self._state.events.popleft()
            if self._finished:
                return
            try:
                chunk = await self._body.__anext__()
            except StopAsyncIteration:
                self._finished = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except BadRequest:
                raise
            except Exception as exc:  # python-multipart raises its own parse errors
                raise BadRequest(f"malformed multipart body ({type(exc).__name__})",
                                 type="malformed-multipart") from None

    async def files(self) -> AsyncIterator[FilePart]:
        events = self._events()
        async for kind, value in events:
            if kind != "part":
                continue
            headers: dict[str, bytes] = value  # type: ignore[assignment]
            disposition, params = parse_options_header(headers.get("content-disposition", b""))
            if disposition != b"form-data" or b"name" not in params:
                raise BadRequest("multipart part without a form-data Content-Disposition name")
            name = params[b"name"].decode("utf-8", "replace")
            filename = params.get(b"filename")
            if filename is None:
                self.fields[name] = await _collect_field(events, name)
                continue
            content_type = headers.get("content-type")
            part = FilePart(field_name=name, filename=filename.decode("utf-8", "replace"),
                            content_type=content_type.decode("latin-1") if content_type else None,
                            chunks=_part_data(events))
            yield part
            async for _ in part.chunks:  # the caller stopped early: skip the rest of this part
                pass


async def _part_data(events: AsyncIterator[tuple[str, object]]) -> AsyncIterator[bytes]:
    async for kind, value in events:
        if kind == "data":
            yield value  # type: ignore[misc]
        elif kind == "end":
            return
    raise BadRequest("the multipart body ended before the file part was complete (truncated upload)",
                     type="truncated-upload")


async def _collect_field(events: AsyncIterator[tuple[str, object]], name: str) -> str:
    collected = bytearray()
    async for kind, value in events:
        if kind == "data":
            collected += value  # type: ignore[operator]
            if len(collected) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(f"form field {name!r} is larger than {MAX_FIELD_BYTES} bytes")
        elif kind == "end":
            break
    return collected.decode("utf-8", "replace")
