"""The row-by-row JSON and JSON Lines splitter that imports used before blocks (services/api/imports/blocks.py),
for UTF-8 files: the reference the block reading is checked against. Kept here, in the tests, as the simple
and obviously sequential reading of a file: one line, or one element with the stdlib scanner on a sliding
buffer, at a time."""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from services.api.imports.parsing import FileError
from services.api.imports.pipeline import MAX_ROW_BYTES

_DECODER = json.JSONDecoder()


async def reference_rows(chunks: AsyncIterable[bytes], fmt: str) -> AsyncIterator[tuple[int, Any]]:
    rows = _jsonl(chunks) if fmt == "jsonl" else _json_array(_text(chunks))
    async for row in rows:
        yield row


async def _text(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    first = True
    async for chunk in chunks:
        if first and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[3:]
        first = False
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


async def _jsonl(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, Any]]:
    buf = b""
    line_no = 0
    first = True
    async for chunk in chunks:
        if first and chunk.startswith(codecs.BOM_UTF8):
            chunk = chunk[3:]
        first = False
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        if len(buf) > MAX_ROW_BYTES:
            raise FileError(line_no + len(lines) + 1, f"line is longer than {MAX_ROW_BYTES} bytes")
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
