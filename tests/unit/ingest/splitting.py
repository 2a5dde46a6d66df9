"""Reading a file the two ways the tests compare: row by row (the reference) and in blocks, with the
committer's part of services/api/imports/service.py simulated (carrying an unfinished element into the next
block, numbering rows after the blocks before, stopping at the file's error)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from services.api.imports.blocks import cut_blocks, file_message, json_rows, jsonl_rows, take_tail
from services.api.imports.parsing import FileError
from services.api.imports.pipeline import ChunkResult, _parse
from tests.unit.ingest.reference_rows import reference_rows


async def _chunks(data: bytes, step: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i:i + step]


def _outcome(number: int, raw: Any) -> tuple[str, Any]:
    """What the worker makes of a row (pipeline.prepare_rows): a parsed object is taken as it is, text or
    bytes are parsed there (and their errors reported)."""
    if isinstance(raw, dict | list):
        return "value", raw
    errors: list = []
    value = _parse(number, raw, errors)
    return ("errors", [(e.row, e.field, e.message) for e in errors]) if errors else ("value", value)


async def reference(data: bytes, fmt: str) -> tuple[list, tuple[int, str] | None]:
    rows: list = []
    error = None
    try:
        async for number, raw in reference_rows(_chunks(data, max(1, len(data))), fmt):
            rows.append((number, _outcome(number, raw)))
    except FileError as exc:
        error = (exc.row, exc.message)
    return rows, error


async def _parts(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def in_blocks(data: bytes, fmt: str, block_bytes: int, step: int = 0, parts: list[bytes] | None = None,
                    charset: str = "utf-8", block_rows: int | None = None) -> tuple[list, tuple[int, str] | None]:
    """The committer of services/api/imports/service.py over `cut_blocks`, the workers' splitting inline.
    The file comes in chunks of `step` bytes, or as `parts`."""
    chunks = _parts(parts) if parts is not None else _chunks(data, step)
    rows: list = []
    error = None
    rows_before = 0
    carry: bytes | None = None
    try:
        async for block in cut_blocks(chunks, fmt, block_bytes, charset, block_rows=block_rows):
            if carry is not None:  # the block is redone from the element the previous one did not finish
                block = replace(block, data=carry + bytes(block.data))
                carry = None
            result = ChunkResult()
            split = json_rows(block, result) if fmt == "json" else jsonl_rows(block, result)
            base = rows_before
            assert all(1 <= number <= result.count for number, _ in split), (split, result.count)
            assert result.tail is None or not block.last, "the last block left an element unfinished"
            carry = take_tail(block, result)
            rows.extend((base + number, _outcome(base + number, raw)) for number, raw in split)
            if result.file_error is not None:
                row = base + result.file_error[0]
                error = (row, file_message(result.file_error[1], row))
                break
            rows_before = base + result.count
        else:
            assert carry is None, "an element was carried past the end of the file"
    except FileError as exc:
        error = (exc.row, exc.message)
    return rows, error
