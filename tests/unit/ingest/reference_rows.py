"""The row-by-row JSON and JSON Lines splitter that imports used before blocks (services/api/imports/blocks.py):
the reference the block reading is checked against. Kept here, in the tests, as the simple and obviously
sequential reading of a file: one element or line at a time, the stdlib scanner on a sliding buffer."""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from services.api.imports.parsing import FileError, prepend
from services.api.imports.pipeline import MAX_ROW_BYTES

_DECODER = json.JSONDecoder()


async def reference_rows(chunks: AsyncIterable[bytes], fmt: str, charset: str = "utf-8"
                         ) -> AsyncIterator[tuple[int, Any]]:
    if fmt == "jsonl":
        async for row in _jsonl(chunks, charset):
            yield row
    elif fmt == "json":
        async for row in _json_array(_decoded(chunks, charset)):
            yield row
    else:
        raise ValueError(f"unknown format {fmt!r}")


async def _decoded(chunks: AsyncIterable[bytes], charset: str) -> AsyncIterator[str]:
    """Text chunks. The first bytes pick UTF-16 / strip a UTF-8 BOM."""
    decoder = None
    async for chunk in chunks:
        if decoder is None:
            if chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                charset = "utf-16"
            elif chunk[:3] == codecs.BOM_UTF8:
                chunk = chunk[3:]
            errors = "surrogateescape" if charset == "utf-8" else "strict"
            decoder = codecs.getincrementaldecoder(charset)(errors=errors)
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise FileError(0, f"the file is not valid {charset}: {exc.reason}") from None
        if text:
            yield text
    if decoder is not None:
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail


async def iter_rows(chunks: AsyncIterable[bytes], fmt: str, charset: str = "utf-8"
                    ) -> AsyncIterator[tuple[int, Any]]:
    if fmt == "jsonl":
        async for row in _jsonl(chunks, charset):
            yield row
    elif fmt == "json":
        async for row in _json_array(_decoded(chunks, charset)):
            yield row
    elif fmt == "csv":
        async for row in _csv(_decoded(chunks, charset)):
            yield row
    else:
        raise ValueError(f"unknown format {fmt!r}")


async def _jsonl(chunks: AsyncIterable[bytes], charset: str) -> AsyncIterator[tuple[int, Any]]:
    buf = b""
    line_no = 0
    first = True
    utf8 = charset == "utf-8"
    async for chunk in chunks:
        if first:
            first = False
            if chunk[:3] == codecs.BOM_UTF8:
                chunk = chunk[3:]
            elif chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                # Rare enough to take the simple path: decode, then re-encode per line.
                utf8 = False
                charset = "utf-16"
        if not utf8:
            break
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        if len(buf) > MAX_ROW_BYTES:
            raise FileError(line_no + len(lines) + 1, f"line is longer than {MAX_ROW_BYTES} bytes")
        for line in lines:
            line_no += 1
            if line.strip():
                yield line_no, line
    else:
        line_no += 1
        if buf.strip():
            yield line_no, buf
        return
    # Non-UTF-8 charsets: decode the text, then hand each line over as str.
    async for row in _jsonl_text(_decoded(prepend(chunk, chunks), charset)):
        yield row


async def prepend(first: bytes, rest: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


async def _jsonl_text(texts: AsyncIterable[str]) -> AsyncIterator[tuple[int, Any]]:
    buf = ""
    line_no = 0
    async for text in texts:
        buf += text
        lines = buf.split("\n")
        buf = lines.pop()
        for line in lines:
            line_no += 1
            if line.strip():
                yield line_no, line
    line_no += 1
    if buf.strip():
        yield line_no, buf


async def _json_array(texts: AsyncIterable[str]) -> AsyncIterator[tuple[int, Any]]:
    buf = ""
    pos = 0
    state = "start"  # start → item → sep → ... → end
    index = 0
    eof = False
    iterator = texts.__aiter__()

    async def more() -> bool:
        nonlocal buf, pos, eof
        try:
            text = await iterator.__anext__()
        except StopAsyncIteration:
            eof = True
            return False
        buf = buf[pos:] + text
        pos = 0
        return True

    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n":
            pos += 1
        if pos >= len(buf):
            if eof or not await more():
                break
            continue
        if state == "start":
            if buf[pos] != "[":
                raise FileError(1, "a JSON import must be an array of tasks ('[' expected)")
            pos += 1
            state = "first"
            continue
        if state in ("first", "item"):
            if state == "first" and buf[pos] == "]":
                pos += 1
                state = "end"
                continue
            try:
                value, end = _DECODER.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if not eof and len(buf) - pos <= MAX_ROW_BYTES and await more():
                    continue
                raise FileError(index + 1, f"malformed JSON in element {index + 1}: {exc.msg}") from None
            if not eof and isinstance(value, int | float) and (end == len(buf) or buf[end] not in ",] \t\r\n"):
                if await more():  # a number may continue in the next chunk ("12" of "12.5")
                    continue
            index += 1
            # The element's text, not the parsed value: the worker parses it again with orjson (faster than
            # pickling the objects across) and an invalid-UTF-8 surrogate fails its encode there.
            text = buf[pos:end]
            pos = end
            state = "sep"
            yield index, text
            continue
        if state == "sep":
            ch = buf[pos]
            pos += 1
            if ch == ",":
                state = "item"
            elif ch == "]":
                state = "end"
            else:
                raise FileError(index + 1, f"malformed JSON after element {index}: ',' or ']' expected")
            continue
        raise FileError(index + 1, "unexpected data after the end of the JSON array")
    if state != "end":
        raise FileError(index + 1, "the JSON array is not closed (file truncated?)")
