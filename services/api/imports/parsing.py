"""Reading an import file as text, incrementally (the file is never whole in memory), and CSV rows.

JSON and JSON Lines are cut into blocks and split in the workers (blocks.py); CSV is split here: a record
ends at a newline outside quotes (even quote count); complete records go to `csv.reader`. Row numbers are
what a person finds in the file: the record's line in the sheet, with the header as row 1.

Text decoding: UTF-8 by default (a BOM is dropped), UTF-16 when the file starts with its BOM, or the
declared charset (latin-1, cp1252). Invalid UTF-8 is decoded with `surrogateescape`, so the damage stays
in its row, which is then reported as such.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from services.api.imports.pipeline import MAX_ROW_BYTES, RowError

FORMATS = ("json", "jsonl", "csv")
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8", "latin-1": "latin-1", "latin1": "latin-1",
            "iso-8859-1": "latin-1", "cp1252": "cp1252", "windows-1252": "cp1252", "utf-16": "utf-16"}
MAX_CSV_COLUMNS = 1000


class FileError(Exception):
    """The file cannot be read past this point; rows before it are kept."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


async def decoded_text(chunks: AsyncIterable[bytes], charset: str) -> AsyncIterator[str]:
    """Text chunks. The first bytes pick UTF-16 / strip a UTF-8 BOM."""
    head, rest = await file_head(chunks)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        charset = "utf-16"
    elif head[:3] == codecs.BOM_UTF8:
        head = head[3:]
    decoder = codecs.getincrementaldecoder(charset)(errors="surrogateescape" if charset == "utf-8" else "strict")
    async for chunk in prepend(head, rest):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise FileError(0, f"the file is not valid {charset}: {exc.reason}") from None
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


async def file_head(chunks: AsyncIterable[bytes], size: int = 4) -> tuple[bytes, AsyncIterator[bytes]]:
    """At least the first `size` bytes of the file (fewer only if it is shorter), enough to see a byte order
    mark, and the chunks after them."""
    iterator = aiter(chunks)
    head = b""
    while len(head) < size:
        chunk = await anext(iterator, None)
        if chunk is None:
            break
        head += chunk
    return head, iterator


async def csv_rows(chunks: AsyncIterable[bytes], charset: str = "utf-8") -> AsyncIterator[tuple[int, Any]]:
    """The rows of a CSV file (the header is row 1): (row number, dict of the header's columns or a RowError)."""
    async for row in _csv(decoded_text(chunks, charset)):
        yield row


async def prepend(first: bytes, rest: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


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
