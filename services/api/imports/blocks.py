"""JSON and JSON Lines imports in blocks: the server process cuts the file into blocks of about a megabyte
at likely row boundaries; a worker splits its block into rows, parses and prepares them (pipeline.py). So
for each task the server process only forwards bytes, and the splitting runs on every core.

JSON Lines: a block ends after a newline, which always ends a row.

JSON arrays: a block ends after the `,` of `}` `,` `{` (whitespace allowed between them). Such a sequence
can also sit inside a string, so a cut is trusted only when the element before it parses: a piece of
the file from a real element start to a candidate parses as one JSON value only if the candidate really
ends that element (a cut inside a string leaves the string open, and JSON has no other way to hide
`}` `,` `{`). A piece that does not parse (a cut inside a string, a malformed element, anything but
objects) is read exactly with the stdlib scanner from there to the end of the block. An element that runs
past its block's end comes back as a `tail`: the committer joins it to the next block and redoes that
one, and only then is the next block's start trusted.

Row numbers within a block start at 1; the committer adds the rows of the blocks before it. Row numbers are
what a person finds in the file: the line number (JSON Lines), the element's position in the array (JSON). A
malformed element ends a JSON file there (an array cannot be resynchronised): the rows before it stand.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from services.api.imports.handoff import Handoff, claim, stash
from services.api.imports.parsing import FileError, decoded_text, file_head, prepend
from services.api.imports.pipeline import MAX_ROW_BYTES, ChunkResult, RowContext, prepare_rows

BLOCK_BYTES = 1024 * 1024
CUT_SEARCH = 64 * 1024  # the last candidate cut is looked for here first
_SEPARATOR = re.compile(rb"}[ \t\r\n]*,[ \t\r\n]*{")
_WHITESPACE = b" \t\r\n"
_DECODER = json.JSONDecoder()
# In messages, where the committer puts the erroneous element's number in the file / the one before it.
ELEMENT, PREVIOUS = "\x00element\x00", "\x00previous\x00"


def take_tail(block: Block, result: ChunkResult) -> bytes | None:
    """The committer's side of a tail: the bytes to put before the next block, or None. A tail longer than
    MAX_ROW_BYTES is an element that will not end within the limit: the file ends there (`file_error`)."""
    if result.tail is None:
        return None
    tail = bytes(block.data[result.tail:])
    if len(tail) > MAX_ROW_BYTES:
        result.file_error = (result.count + 1, too_large(result.tail_error))
        return None
    return tail


def too_large(reason: str | None) -> str:
    """The error of an element that has not ended within MAX_ROW_BYTES (too long, or never closed)."""
    return f"element {ELEMENT} is larger than {MAX_ROW_BYTES} bytes" + (f" or malformed ({reason.split(': ', 1)[-1]})"
                                                                     if reason else "")


def file_message(message: str, row: int) -> str:
    """A block's error message with the row's number in the file."""
    return message.replace(ELEMENT, str(row)).replace(PREVIOUS, str(row - 1))


@dataclass
class Block:
    data: bytes | bytearray | Handoff
    fmt: str  # "json" | "jsonl"
    last: bool = False  # nothing of the file follows (JSON: the closing "]" is in this block, if anywhere)
    overlong: bool = False  # JSON Lines: `data` is the start of a line longer than MAX_ROW_BYTES
    first: bool = False  # the file's first block (JSON: an empty array may close right away)


# -- the server process: cutting -----------------------------------------------------------------------

async def cut_blocks(chunks: AsyncIterable[bytes], fmt: str, block_bytes: int = BLOCK_BYTES, charset: str = "utf-8",
                     block_rows: int | None = None) -> AsyncIterator[Block]:
    """The file as blocks of UTF-8 (other charsets and UTF-16 with its BOM are transcoded here). JSON: the
    opening "[" is checked and dropped here. `block_rows`: about how many rows a block may hold at most (its
    size is then estimated from its first bytes), so that a file of small rows does not make blocks of tens of
    thousands of rows, each a parsed list and a result of that many objects in memory at once."""
    chunks = await _as_utf8(chunks, charset)
    parts: list[bytes] = []
    size = 0
    buf = b""
    started = False
    first = True
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if not started:
            buf = b"".join(parts)
            if len(buf) < 3 and codecs.BOM_UTF8.startswith(buf):
                continue  # a BOM may be split between chunks
            if buf.startswith(codecs.BOM_UTF8):
                buf = buf[3:]
            if fmt == "json":  # JSON Lines keeps its leading blank lines: they count as lines
                buf = buf.lstrip(_WHITESPACE)
            parts, size = [buf], len(buf)
            if not buf:
                continue
            started = True
            if fmt == "json":
                if buf[:1] != b"[":
                    raise FileError(1, "a JSON import must be an array of tasks ('[' expected)")
                parts, size = [buf[1:]], len(buf) - 1
        if size < block_bytes:
            continue
        buf = b"".join(parts)
        at = 0  # where the next block starts in buf
        while True:
            # Cut within the first `block_bytes` (or fewer, for `block_rows`) when possible: a JSON block no longer
            # than MAX_ROW_BYTES holds no element over the limit, and its worker parses it in one call (json_rows).
            limit = _size_for_rows(buf, at, fmt, block_bytes, block_rows)
            if len(buf) - at < limit:
                break
            cut = _cut(buf, fmt, limit, at)
            if cut is None and limit < block_bytes:
                cut = _cut(buf, fmt, block_bytes, at)
            if cut is None:
                cut = _cut(buf, fmt, None, at)
            if cut is None:
                if len(buf) - at <= MAX_ROW_BYTES + block_bytes:
                    break
                if fmt == "jsonl":
                    yield Block(buf[at:at + MAX_ROW_BYTES], fmt, overlong=True, first=first)
                    return
                cut = len(buf) - at  # no element ends in here: the worker returns it all as a tail, too long
            yield Block(buf[at:at + cut], fmt, first=first)
            first = False
            at += cut
        buf = buf[at:]
        parts, size = [buf], len(buf)
    buf = b"".join(parts)
    at = 0
    while started and block_rows:  # the end of the file, too, in blocks of about `block_rows`
        limit = _size_for_rows(buf, at, fmt, block_bytes, block_rows)
        cut = _cut(buf, fmt, limit, at) if limit < len(buf) - at else None
        if cut is None:
            break
        yield Block(buf[at:at + cut], fmt, first=first)
        first = False
        at += cut
    buf = buf[at:]
    if fmt == "jsonl":
        yield Block(buf[3:] if not started and buf.startswith(codecs.BOM_UTF8) else buf, fmt, last=True, first=first)
        return
    if not started:
        raise FileError(1, "the JSON array is not closed (file truncated?)")
    yield Block(buf, fmt, last=True, first=first)


async def _as_utf8(chunks: AsyncIterable[bytes], charset: str) -> AsyncIterable[bytes]:
    """UTF-8 passes as it is (invalid bytes stay in their row, which reports them); anything else is decoded
    strictly (parsing.decoded_text) and encoded again."""
    head, rest = await file_head(chunks)
    chunks = prepend(head, rest)
    if charset == "utf-8" and head[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return chunks
    return _encoded(decoded_text(chunks, charset))


async def _encoded(texts: AsyncIterable[str]) -> AsyncIterator[bytes]:
    async for text in texts:
        yield text.encode("utf-8")


def _cut(buf: bytes, fmt: str, limit: int | None = None, start: int = 0) -> int | None:
    """Where the block that starts at `start` ends, counted from `start` (within its first `limit` bytes):
    after the last newline / at the "{" of the last candidate separator."""
    end = len(buf) if limit is None else min(start + limit, len(buf))
    if fmt == "jsonl":
        at = buf.rfind(b"\n", start, end)
        return at + 1 - start if at >= 0 else None
    tail_start = max(start, end - CUT_SEARCH)
    last = _last_separator(buf, tail_start, end)
    if last is None and tail_start > start:
        last = _last_separator(buf, start, end)  # elements longer than the search window
    return None if last is None else last.end() - 1 - start


ROWS_SAMPLE = 16 * 1024


def _size_for_rows(buf: bytes, start: int, fmt: str, block_bytes: int, block_rows: int | None) -> int:
    """The size of a block that starts at `start`: `block_bytes`, or less if rows as small as those in its first
    ROWS_SAMPLE bytes would put more than `block_rows` in it. Rows are counted as newlines (JSON Lines) or
    opening braces (JSON: an element with nested objects counts more than once, so blocks come out smaller,
    never larger, than intended)."""
    if not block_rows:
        return block_bytes
    sample = min(ROWS_SAMPLE, block_bytes, len(buf) - start)
    rows = buf.count(b"\n" if fmt == "jsonl" else b"{", start, start + sample)
    if rows * block_bytes <= block_rows * sample:
        return block_bytes
    return max(1, block_rows * sample // rows)


def _last_separator(buf: bytes, start: int, end: int) -> re.Match[bytes] | None:
    last = None
    for last in _SEPARATOR.finditer(buf, start, end):  # noqa: B007
        pass
    return last


# -- the workers: splitting and preparing --------------------------------------------------------------------

def prepare_block(ctx: RowContext, block: Block, into: str | None = None) -> ChunkResult:
    """Worker entry point: the block's rows, prepared (pipeline.prepare_rows), with the block's row count,
    its unfinished tail or the error that ends the file. The block's data and the result's COPY rows cross
    between the processes as handoffs (handoff.py); the COPY rows in the file `into` if given."""
    block = replace(block, data=claim(block.data))
    result = ChunkResult()
    rows = json_rows(block, result) if block.fmt == "json" else jsonl_rows(block, result)
    prepare_rows(ctx, rows, parsed=True, result=result)
    result.copy_rows = stash(result.copy_rows, into)
    return result


def jsonl_rows(block: Block, result: ChunkResult) -> list[tuple[int, Any]]:
    if block.overlong:
        result.file_error = (1, f"line is longer than {MAX_ROW_BYTES} bytes")
        return []
    lines = block.data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # after the final newline
    result.count = len(lines)
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    rows: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line or line.isspace():
            continue
        try:
            obj = loads(line) if len(line) <= MAX_ROW_BYTES else None  # too long: the parser says so, by row
        except decode_error:
            obj = None
        # Anything but an object goes to the worker's parser as text: it names what is wrong.
        rows.append((number, obj if isinstance(obj, dict) else line))
    return rows


def json_rows(block: Block, result: ChunkResult) -> list[tuple[int, Any]]:
    rows = _whole_block(block, result)
    return rows if rows is not None else _element_rows(block, result)


def _element_rows(block: Block, result: ChunkResult) -> list[tuple[int, Any]]:
    data = block.data
    rows: list[tuple[int, Any]] = []
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    pos = _skip_whitespace(data, 0)
    index = 0
    for candidate in _SEPARATOR.finditer(data, pos):
        if candidate.start() + 1 - pos > MAX_ROW_BYTES:
            return _scan(block, pos, index, rows, result)
        try:
            obj = loads(data[pos:candidate.start() + 1])
        except decode_error:
            return _scan(block, pos, index, rows, result)
        index += 1
        rows.append((index, obj))
        pos = candidate.end() - 1
    # The last element: up to the separator that ends a block, or to the "]" that ends the file.
    end = len(data.rstrip(_WHITESPACE))
    closed = False
    if block.last:
        closed = data[:end].endswith(b"]")
    if closed or (not block.last and data[:end].endswith(b",")):
        end = len(data[:end - 1].rstrip(_WHITESPACE))
    if pos < end:
        if end - pos > MAX_ROW_BYTES:
            return _scan(block, pos, index, rows, result)
        try:
            obj = loads(data[pos:end])
        except decode_error:
            return _scan(block, pos, index, rows, result)
        if not isinstance(obj, dict):  # "]" may have closed a last element that is an array: read exactly
            return _scan(block, pos, index, rows, result)
        index += 1
        rows.append((index, obj))
    elif closed and not (block.first and index == 0):
        return _scan(block, pos, index, rows, result)  # "]" right after a separator
    if block.last and not closed:
        result.file_error = (index + 1, "the JSON array is not closed (file truncated?)")
    result.count = index
    return rows


def _whole_block(block: Block, result: ChunkResult) -> list[tuple[int, Any]] | None:
    """The common block in one parse: complete objects, each followed by its comma, none over the row limit
    (the block is no longer than the limit). None: not such a block; `json_rows` reads it element by element.
    The block starts at an element start, so if it parses as the items of an array, its elements are the
    ones the separators delimit (a separator inside a string leaves that string open: no parse)."""
    data = block.data
    if block.last or len(data) > MAX_ROW_BYTES:
        return None
    end = len(data)
    while end and data[end - 1] in _WHITESPACE:
        end -= 1
    if not end or data[end - 1] != ord(","):
        return None
    text = bytearray(b"[")  # one copy of the block (not a strip, a slice and a join)
    with memoryview(data) as view:
        text += view[:end - 1]
    text += b"]"
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not values:
        return None
    for value in values:
        if type(value) is not dict:
            return None
    result.count = len(values)
    return list(enumerate(values, 1))


def _skip_whitespace(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos] in _WHITESPACE:
        pos += 1
    return pos


def _scan(block: Block, pos: int, index: int, rows: list[tuple[int, Any]], result: ChunkResult
          ) -> list[tuple[int, Any]]:
    """The exact reading (stdlib scanner) of the block from `pos`, an element start: elements go on as
    their text (the worker parses it again and names what is wrong with it)."""
    text = block.data[pos:].decode("utf-8", "surrogateescape")

    def byte_offset(char: int) -> int:
        return pos + len(text[:char].encode("utf-8", "surrogateescape"))

    i, n = 0, len(text)
    # first → item → sep → item ... (→ end: a "]" in the text, only when the cutter found none at the end)
    state = "first" if block.first and index == 0 else "item"
    element_start = 0
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        if state == "first" and text[i] == "]":
            i += 1
            state = "end"
            continue
        if state in ("first", "item"):
            element_start = i
            try:
                value, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                message = f"malformed JSON in element {ELEMENT}: {exc.msg}"
                if block.last:
                    result.file_error = (index + 1, message)
                else:
                    result.tail, result.tail_error = byte_offset(i), message
                result.count = index
                return rows
            if not block.last and isinstance(value, int | float) and (end >= n or text[end] not in ",] \t\r\n"):
                break  # a number may go on in the next block ("12" of "12.5")
            # (a character is at most 4 bytes: below a quarter of the limit no encoding is needed to know)
            if end - i > MAX_ROW_BYTES // 4 and len(text[i:end].encode("utf-8", "surrogateescape")) > MAX_ROW_BYTES:
                result.file_error = (index + 1, too_large(None))
                result.count = index
                return rows
            index += 1
            rows.append((index, text[i:end]))
            i = end
            state = "sep"
        elif state == "sep":
            ch = text[i]
            i += 1
            if ch == ",":
                state = "item"
            elif ch == "]":
                state = "end"
            else:
                result.file_error = (index + 1, f"malformed JSON after element {PREVIOUS}: ',' or ']' expected")
                result.count = index
                return rows
        else:
            result.file_error = (index + 1, "unexpected data after the end of the JSON array")
            result.count = index
            return rows
    if not block.last:
        # A block ends after a separator; if it ends after an element instead (a cut with no candidate, or a
        # number that may go on), that element is redone with the next block.
        if state == "sep":
            rows.pop()
            index -= 1
        if state == "sep" or i < n:
            result.tail = byte_offset(element_start)
            result.tail_error = f"malformed JSON in element {ELEMENT}: the element does not end"
    elif state != "end":
        result.file_error = (index + 1, "the JSON array is not closed (file truncated?)")
    result.count = index
    return rows
