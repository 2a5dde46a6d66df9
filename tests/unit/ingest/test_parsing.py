"""The incremental readers give the same rows wherever the chunk (and block) boundaries fall."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.api.imports.parsing import FileError, csv_rows
from services.api.imports.pipeline import RowError, remap_offset
from tests.unit.ingest.splitting import in_blocks


def _rows(data: bytes, fmt: str, step: int, charset: str = "utf-8") -> list:
    """The rows as the import reads them: JSON and JSON Lines in blocks (of 16 bytes here, so elements cross
    them), CSV row by row; the file in chunks of `step` bytes."""
    if fmt != "csv":
        rows, error = asyncio.run(in_blocks(data, fmt, 16, step, charset=charset))
        if error is not None:
            raise FileError(*error)
        return [(number, value if kind == "value" else ("error", value)) for number, (kind, value) in rows]

    async def chunks():  # noqa: ANN202
        for i in range(0, len(data), step):
            yield data[i:i + step]

    async def collect() -> list:
        out = []
        async for number, raw in csv_rows(chunks(), charset):
            if isinstance(raw, RowError):
                out.append((number, "error", raw.message))
            else:
                out.append((number, raw))
        return out

    return asyncio.run(collect())


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_json_array_split_anywhere(step: int) -> None:
    data = json.dumps([{"data": {"text": "a, [b] {c} \"q\" \\"}}, 12.5, {"text": "ü → ✓"}, []]).encode()
    assert _rows(data, "json", step) == [(1, {"data": {"text": "a, [b] {c} \"q\" \\"}}), (2, 12.5),
                                         (3, {"text": "ü → ✓"}), (4, [])]


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_jsonl_split_anywhere_with_bom_and_blank_lines(step: int) -> None:
    data = b'\xef\xbb\xbf{"a": 1}\n\n{"a": "\xc3\xbc"}\r\n{"a": 3}'
    assert _rows(data, "jsonl", step) == [(1, {"a": 1}), (3, {"a": "ü"}), (4, {"a": 3})]


@pytest.mark.parametrize("step", [1, 3, 4096])
def test_csv_quoted_newlines_split_anywhere(step: int) -> None:
    data = b'text,n\r\n"one\r\nline ""two""",1\r\nplain,2\r\nshort\r\n'
    assert _rows(data, "csv", step) == [(2, {"text": 'one\r\nline "two"', "n": "1"}), (3, {"text": "plain", "n": "2"}),
                                        (4, "error", "expected 2 columns, got 1")]


def test_latin1_declared() -> None:
    assert _rows("text\ncafé\n".encode("latin-1"), "csv", 2, "latin-1") == [(2, {"text": "café"})]


def test_truncated_array_is_a_file_error() -> None:
    with pytest.raises(FileError):
        _rows(b'[{"a": 1}, {"a": ', "json", 4)
    with pytest.raises(FileError):
        _rows(b'{"not": "an array"}', "json", 4)


def test_offsets_move_past_placeholders() -> None:
    # "Call Maria Lopez now" → "Call [PERSON] now": original [5, 16) became [5, 13)
    mapping = [(5, 16, 5, 13)]
    assert remap_offset(mapping, 0, is_end=False) == 0
    assert remap_offset(mapping, 5, is_end=False) == 5
    assert remap_offset(mapping, 8, is_end=False) == 5  # inside → placeholder start
    assert remap_offset(mapping, 8, is_end=True) == 13  # inside → placeholder end
    assert remap_offset(mapping, 16, is_end=True) == 13
    assert remap_offset(mapping, 17, is_end=False) == 14  # after: shifted by -3
    assert remap_offset(mapping, 20, is_end=True) == 17


def test_bulk_event_ids_look_like_the_envelopes_ulids() -> None:
    from shared.events.envelope import new_event_id, new_event_ids

    before = new_event_id()
    ids = new_event_ids(500)
    assert len(set(ids)) == 500 and all(len(i) == 26 for i in ids)
    assert set("".join(ids)) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert all(i[:10] >= before[:10] for i in ids)  # the time part: never earlier than an id made before


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_other_charsets_are_read_in_blocks_as_utf8(step: int) -> None:
    rows = [{"text": "café — “quoted” ü"}, {"text": "second, }, { row"}]
    utf16 = json.dumps(rows, ensure_ascii=False).encode("utf-16")  # with its BOM, undeclared
    assert _rows(utf16, "json", step) == [(1, rows[0]), (2, rows[1])]
    cp1252 = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("cp1252")
    assert _rows(cp1252, "jsonl", step, "cp1252") == [(1, rows[0]), (2, rows[1])]
    with pytest.raises(FileError, match="not valid cp1252"):
        _rows(b'{"text": "\x81"}\n', "jsonl", step, "cp1252")  # 0x81 is unassigned in cp1252
