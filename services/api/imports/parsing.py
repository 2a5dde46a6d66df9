"""Splitting an import file into rows, incrementally: the file is never whole in memory.

Row numbers are what a person finds in the file: the line number (JSON Lines), the element's position in
the array (JSON), the record's line in the sheet with the header as row 1 (CSV).

- JSON Lines: split on newlines; each line goes to a worker as bytes (parsed there).
- JSON array: the stdlib C scanner (`raw_decode`) finds one element at a time in a sliding buffer; the
  element's text goes to a worker.
  A malformed element ends the file there (the array cannot be resynchronised): earlier rows stand.
- CSV: a record ends at a newline outside quotes (even quote count); complete records go to `csv.reader`.

Text decoding: UTF-8 by default (a BOM is dropped), UTF-16 when the file starts with its BOM, or the
declared charset (latin-1, cp1252). Invalid UTF-8 is decoded with `surrogateescape`, so the damage stays
in its row, which is then reported as such.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from services.api.imports.pipeline import MAX_ROW_BYTES, RowError

FORMATS = ("json", "jsonl", "csv")
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "latin-1": "latin-1", "latin1": "latin-1",
            "iso-8859-1": "latin-1", "cp1252": "cp1252", "windows-1252": "cp1252", "utf-16": "utf-16"}
MAX_CSV_COLUMNS = 1000
_DECODER = json.JSONDecoder()


class FileError(Exception):
    """The file cannot be read past this point; rows before it are kept."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


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


async def _csv(texts: AsyncIterable[str]) -> AsyncIterator[tuple[int, Any]]:
    buf = ""
    header: list[str] | None = None
    record_no = 0

    def records(text: str) -> list[list[str]]:
        try:
            return list(csv.reader(io.StringIO(text), strict=True))
        except csv.Error as exc:
            raise FileError(record_no + 1, f"malformed CSV: {exc}") from None

    def complete_prefix(text: str) -> int:
        """End of the last record that is complete (newline outside quotes); 0 if none."""
        end = text.rfind("\n")
        while end >= 0:
            if text.count('"', 0, end) % 2 == 0:
                return end + 1
            end = text.rfind("\n", 0, end)
        return 0

    async def emit(text: str) -> AsyncIterator[tuple[int, Any]]:
        nonlocal header, record_no
        for fields in records(text):
            record_no += 1
            if header is None:
                header = [h.strip() for h in fields]
                if not header or any(not h for h in header) or len(set(header)) != len(header):
                    raise FileError(1, "the CSV header must name every column once")
                if len(header) > MAX_CSV_COLUMNS:
                    raise FileError(1, f"more than {MAX_CSV_COLUMNS} columns")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != len(header):
                yield record_no, RowError(record_no, None,
                                          f"expected {len(header)} columns, got {len(fields)}")
                continue
            yield record_no, dict(zip(header, fields, strict=True))

    async for text in texts:
        buf += text
        cut = complete_prefix(buf)
        if cut:
            async for row in emit(buf[:cut]):
                yield row
            buf = buf[cut:]
        if len(buf) > MAX_ROW_BYTES:
            raise FileError(record_no + 1, f"record longer than {MAX_ROW_BYTES} bytes (unbalanced quote?)")
    if buf.strip():
        async for row in emit(buf):
            yield row
    if header is None:
        raise FileError(1, "the CSV file has no header row")
