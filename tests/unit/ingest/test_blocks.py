"""JSON and JSON Lines in blocks (services/api/imports/blocks.py) read exactly like the row-by-row splitter.

The reference is the row-by-row splitter imports used before (tests/unit/ingest/reference_rows.py) fed the
whole file: the same row numbers, the same values (as the
worker's parser sees them, errors included) and the same error that ends the file, wherever the blocks are
cut. The committer's part (carrying an unfinished element into the next block, numbering rows after the
blocks before, stopping at the file's error) is simulated here as services/api/imports/service.py does it.
"""

from __future__ import annotations

import hmac
import json
import os
import random
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.api.imports import handoff
from services.api.imports.blocks import Block, cut_blocks, prepare_block
from services.api.imports.pipeline import (COPY_HEADER, COPY_TRAILER, MAX_ROW_BYTES, TASK_COPY_COLUMNS, ChunkResult,
                                           RowContext, decrypt_task_payload, hmac_sha256, rebase_rows, task_uuid)
from shared.crypto.datakeys import _wrap_aad
from tests.unit.ingest.splitting import _chunks, in_blocks, reference

BOM = b"\xef\xbb\xbf"


def _block_sizes(data: bytes) -> list[tuple[int, int | None]]:
    """(block_bytes, block_rows): small blocks, and blocks held to a few rows, as a file of small rows is."""
    return [(1, None), (3, None), (7, None), (16, None), (61, None), (256, 1), (1000, 2), (len(data), 3),
            (len(data) + 1, None), (len(data) + 1, 1)]


async def assert_same_reading(data: bytes, fmt: str, steps: tuple[int, ...] = (3, 64, 4096)) -> None:
    expected = await reference(data, fmt)
    for block_bytes, block_rows in _block_sizes(data):
        for step in steps:
            got = await in_blocks(data, fmt, block_bytes, step, block_rows=block_rows)
            assert got == expected, (f"{fmt} file {data!r}\nblock_bytes={block_bytes} block_rows={block_rows} "
                                     f"chunk step={step}\nexpected {expected}\ngot      {got}")


# -- a deterministic generator of tricky files --------------------------------------------------------------

TRICKY = ["}, {", "},{", '"}, {"a": 1', "}\n,\n{", "} ,\t{", "}, {\"text\": \"x\"}", "] , [", "[{", "}]", "\\",
          '\\"', '"', "\\u0041", "ü → ✓", "𝄞", "\u2028\u2029", "日本語", "", " ", "{}", "[]", ",", "}{", "\t",
          "null", "12.5", "\r\n", "a" * 40]
WHITESPACE = ["", "", "", " ", "\n", "\t", "\r\n", "  \n\t "]
LINE_WHITESPACE = ["", "", " ", "\t", "  "]
NUMBERS = [0, -1, 7, 12, 12.5, -0.25, 1e21, 1.5e-7, 3.141592653589793, 2 ** 62, 123456789012345678901234567890]


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 4)))


def _value(rng: random.Random, depth: int) -> Any:
    pick = rng.random()
    if depth >= 3 or pick < 0.35:
        return rng.choice([_string(rng), _string(rng), rng.choice(NUMBERS), True, False, None])
    if pick < 0.7:
        return {_string(rng) or f"k{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _element(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.75:
        obj = {"text": _string(rng) or "t"}
        for i in range(rng.randint(0, 3)):
            obj[_string(rng) or f"extra{i}"] = _value(rng, 1)
        if rng.random() < 0.2:  # objects in an array: `}, {` outside any string, inside the element
            obj["items"] = [{"n": n, "s": _string(rng)} for n in range(rng.randint(2, 4))]
        return obj
    if pick < 0.85:
        return {}
    return rng.choice([rng.choice(NUMBERS), _string(rng), [1, {"a": "}, {"}], None, True, [], {"nested": {}}])


def _dump(value: Any, rng: random.Random, ws: list[str]) -> str:
    """JSON text with random (valid) whitespace between the tokens."""
    def w() -> str:
        return rng.choice(ws)

    if isinstance(value, dict):
        if not value:
            return "{" + w() + "}"
        items = [w() + json.dumps(k, ensure_ascii=rng.random() < 0.3) + w() + ":" + w() + _dump(v, rng, ws) + w()
                 for k, v in value.items()]
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        if not value:
            return "[" + w() + "]"
        return "[" + ",".join(w() + _dump(v, rng, ws) + w() for v in value) + "]"
    return json.dumps(value, ensure_ascii=rng.random() < 0.3)


MALFORMED = ['{"text": }', '{"text" "x"}', '{"text": "x",}', "NaN", '{"text": tru}', "'single'", '{"text": "x"',
             '{"text": "a"]', "{,}", "-"]
BAD_BYTES = [b"\xff", b"\xc3(", b"\x80abc", b"\xed\xa0\x80", b"\xf0\x9f"]
AFTER_CLOSE = ["x", "{}", ', {"text": "after"}', "[1]", '"s"', "1", "]", "]]", ","]
MARK = "@@INVALID-UTF8@@"


def json_array_file(rng: random.Random) -> bytes:
    elements = [_element(rng) for _ in range(rng.randint(0, 12))]
    if elements and rng.random() < 0.15:
        elements[rng.randrange(len(elements))] = {"text": "bad", "here": MARK}
    texts = [_dump(e, rng, WHITESPACE) for e in elements]
    if texts and rng.random() < 0.12:
        texts[rng.randrange(len(texts))] = rng.choice(MALFORMED)
    seps = [rng.choice(WHITESPACE) + "," + rng.choice(WHITESPACE) for _ in texts]
    if len(texts) > 1 and rng.random() < 0.1:  # missing comma between two elements
        seps[rng.randrange(len(texts) - 1)] = rng.choice([" ", "", "\n"])
    body = "".join(t + (seps[i] if i < len(texts) - 1 else "") for i, t in enumerate(texts))
    text = rng.choice(WHITESPACE) + "[" + rng.choice(WHITESPACE) + body
    ending = rng.random()
    if texts and ending < 0.08:
        text += "," + rng.choice(WHITESPACE) + "]"  # trailing comma
    elif ending < 0.16:
        text += rng.choice(WHITESPACE)  # the array never closed
    elif ending < 0.24:
        text += rng.choice(WHITESPACE) + "]" + rng.choice(WHITESPACE) + rng.choice(AFTER_CLOSE)
    else:
        text += rng.choice(WHITESPACE) + "]"
    text += rng.choice(WHITESPACE)
    data = text.encode()
    data = data.replace(MARK.encode(), rng.choice(BAD_BYTES))
    if rng.random() < 0.08 and len(data) > 2:
        data = data[:rng.randrange(1, len(data))]  # truncated anywhere
    if rng.random() < 0.15:
        data = BOM + data
    return data


def json_lines_file(rng: random.Random) -> bytes:
    lines: list[bytes] = []
    for i in range(rng.randint(0, 14)):
        pick = rng.random()
        if pick < 0.15:  # blank lines, also before the first row
            lines.append(rng.choice(["", " ", "\t", "\r", "  \t"]).encode())
        elif pick < 0.22:
            lines.append(rng.choice(MALFORMED).encode())
        elif pick < 0.27:
            lines.append(_dump({"text": "bad", "here": MARK}, rng, LINE_WHITESPACE).encode()
                         .replace(MARK.encode(), rng.choice(BAD_BYTES)))
        else:
            lines.append((rng.choice(LINE_WHITESPACE) + _dump(_element(rng), rng, LINE_WHITESPACE)
                          + rng.choice(LINE_WHITESPACE)).encode())
    newline = b"\r\n" if rng.random() < 0.3 else b"\n"
    data = newline.join(lines)
    if lines and rng.random() < 0.6:
        data += newline
    if rng.random() < 0.15:
        data = BOM + data
    return data


# -- equivalence ----------------------------------------------------------------------------------------------

JSON_CASES = [
    b"[]", b" [ ] ", b"\n[\n]\n", BOM + b"[]", b"[", b"", b"   ", b'{"text": "not an array"}',
    b'[{"text": "a"}, {"text": "b"}]',
    b'[{"text": "}, {"}, {"text": "},{"}, {"text": "\\"}, {\\"a\\": 1"}]',
    b'[{"text": "x"}\n,\n{"text": "y"}\r\n,\t{"text": "z"}]',
    b'[{}, {}, {"text": "after empties"}, {}]',
    b'[1, 2.5, "s", null, true, [1, {"a": "}, {"}], {"text": "obj"}, 12.5]',
    b'[{"text": "a"}, 12]', b'[12, {"text": "a"}]', b"[1.5, 12.25, -0.5e3]",
    '[{"text": "ü → ✓ 𝄞 日本語"}, {"text": "}, {ü}, {"}]'.encode(),
    BOM + b'  [{"text": "bom"}]',
    b'[{"text": "a"},]', b'[{"text": "a"}, {"text": "b"}', b'[{"text": "a"},', b'[{"text": "a"}, {"text": ',
    b'[{"text": "a"}] x', b'[{"text": "a"}] , {"text": "b"}',
    b'[{"text": "a"} {"text": "b"}]', b'[{"text": "a"}{"text": "b"}, {"text": "c"}]',
    b'[{"text": "a"}, {"text": "b\xff"}, {"text": "c"}]', b'[{"text": "\xc3("}, {"text": "ok"}]',
    b'[{"text": "a"}, {"text": }, {"text": "c"}]', b'[{"text": "a"}, NaN, {"text": "c"}]',
    b'[{"text": "unterminated}, {"text": "b"}]', b'[{"items": [{"a": 1}, {"b": 2}]}, {"text": "x"}]',
    b'[{"text": "a"}, , {"text": "b"}]', b"[,]", b'["]', b'["a", "]', b'[{"text": "a"]',
]

JSONL_CASES = [
    b"", b"\n", b'{"text": "a"}', b'{"text": "a"}\n', b'{"text": "a"}\r\n{"text": "b"}\r\n',
    b'{"text": "a"}\n\n  \n{"text": "b"}\n\t\n', BOM + b'{"text": "bom"}\n{"text": "b"}',
    b'{"text": "a"}\n[1, 2]\n12\n"s"\nnull\n{}\n', b'{"text": "a"}\n{"text": "b\xff"}\n{"text": "c"}\n',
    b'{"text": "a"}\n{"text": }\n{"text": "c"}', b'{"text": "}, {"}\n{"text": "},{"}\n',
    '{"text": "ü → ✓"}\n{"text": "𝄞"}\n'.encode(), b'{"text": "no final newline"}\n{"text": "last"}',
]


@pytest.mark.parametrize("data", JSON_CASES, ids=range(len(JSON_CASES)))
async def test_json_arrays_read_in_blocks_as_row_by_row(data: bytes) -> None:
    await assert_same_reading(data, "json", steps=(1, 3, 4096))


@pytest.mark.parametrize("data", JSONL_CASES, ids=range(len(JSONL_CASES)))
async def test_json_lines_read_in_blocks_as_row_by_row(data: bytes) -> None:
    await assert_same_reading(data, "jsonl", steps=(1, 3, 4096))


@pytest.mark.parametrize("seed", range(6))
async def test_random_json_arrays_read_in_blocks_as_row_by_row(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(20):
        await assert_same_reading(json_array_file(rng), "json", steps=(rng.choice([1, 3, 5, 11]), 4096))


@pytest.mark.parametrize("seed", range(4))
async def test_random_json_lines_read_in_blocks_as_row_by_row(seed: int) -> None:
    rng = random.Random(2000 + seed)
    for _ in range(20):
        await assert_same_reading(json_lines_file(rng), "jsonl", steps=(rng.choice([1, 3, 5, 11]), 4096))


async def test_the_generator_makes_what_it_claims() -> None:
    """The random files do contain the tricky cases (else the tests above would prove little)."""
    rng = random.Random(1000)
    files = [json_array_file(rng) for _ in range(150)]
    joined = b"\n".join(files)
    for needle in (b'}, {"', b"},{", b'"}, {\\"a\\": 1', b"{}", b"\xff", BOM, b"}\n,\n{", b"]]"):
        assert needle in joined, needle
    assert sum(joined.count(m.encode()) for m in MALFORMED) > 5
    errors = [(await reference(f, "json"))[1] for f in files[:60]]
    assert sum(e is None for e in errors) > 20 and sum(e is not None for e in errors) > 5
    rows = [(await reference(f, "json"))[0] for f in files[:60]]
    assert sum(len(r) for r in rows) > 200


async def test_an_array_without_candidate_cuts_is_cut_wherever_the_buffer_ends() -> None:
    """No `}, {` in more than MAX_ROW_BYTES + a block: the block ends where the buffer ends, which may be inside
    a number ("12" of "12.5"), a string or `true`, or right after an element: that element is redone with
    the next block. Every position in a stretch of such elements is tried."""
    filler = ", ".join(['"' + "a" * 20_000 + '"', "[1, 2]", "true", "-7.25"] * 53)
    stretch = '12.5, -1234567.25e-3, true, null, "s]{,", {"text": "a", "n": 1}, [1, {"b": 2}], 123456789012, {}'
    data = f"[{filler}, {stretch}, 42, {{\"text\": \"last\"}}]".encode()
    start = data.index(stretch.encode())
    assert start > MAX_ROW_BYTES + 4096 and b"}, {" not in data and b"},{" not in data
    expected = await reference(data, "json")
    assert expected[1] is None and len(expected[0]) == 4 * 53 + 11
    wrong = []
    for cut in range(start - 2, start + len(stretch) + 2):
        got = await in_blocks(data, "json", 4096, parts=[data[:cut], data[cut:]])
        if got != expected:
            wrong.append(f"{data[cut - 8:cut].decode()}|{data[cut:cut + 8].decode()} -> {got[1]}")
    assert not wrong, "\n".join(wrong)


async def test_a_json_lines_line_longer_than_a_row_ends_the_file_at_its_line() -> None:
    data = b'{"text": "a"}\n\n{"text": "b"}\n{"text": "' + b"x" * (MAX_ROW_BYTES + 70_000) + b'"}\n{"text": "c"}\n'
    rows, error = await in_blocks(data, "jsonl", 4096, 65_536)
    assert [number for number, _ in rows] == [1, 3]
    assert error == (4, f"line is longer than {MAX_ROW_BYTES} bytes")


async def test_a_json_lines_row_longer_than_max_row_bytes_is_not_imported() -> None:
    """iter_rows never lets a line over MAX_ROW_BYTES through: split across chunks it ends the file ("line is
    longer than"), whole in one chunk it is a row error ("row is larger than"). In blocks, a line shorter
    than MAX_ROW_BYTES + the block size reaches the worker as a parsed object, which nothing measures."""
    long_line = b'{"text": "' + b"x" * (MAX_ROW_BYTES + 100) + b'"}'
    data = b'{"text": "a"}\n' + long_line + b'\n{"text": "c"}\n'
    readings = {"row by row": await reference(data, "jsonl"),
                "blocks of 64 KiB": await in_blocks(data, "jsonl", 64 * 1024, 64 * 1024),
                "blocks of 4 KiB": await in_blocks(data, "jsonl", 4096, 256 * 1024)}
    for name, (rows, error) in readings.items():
        accepted = [number for number, (kind, _) in rows if kind == "value"]
        assert 2 not in accepted, f"{name}: a {len(long_line)}-byte row was imported (file error: {error})"


async def test_a_valid_element_after_one_longer_than_a_block_is_not_reported_malformed() -> None:
    """An element longer than MAX_ROW_BYTES + a block, with no `}, {` in it: when a storage chunk happens to
    end right after its closing brace, the next (valid) element must not become "malformed" and the
    outcome must not depend on where the chunks end."""
    big = b'{"text": "' + b"x" * (MAX_ROW_BYTES + 10_000) + b'"}'
    data = b"[" + big + b', {"text": "b"}]'
    end = 1 + len(big)  # right after the big element's "}"
    outcomes = {}
    for cut in (end - 1, end, end + 1, end + 2):
        outcomes[cut] = await in_blocks(data, "json", 4096, parts=[data[:cut], data[cut:]])
    summary = {f"chunk ends after {data[cut - 3:cut]!r}": ([(n, kind) for n, (kind, _) in rows], error)
               for cut, (rows, error) in outcomes.items()}
    misreported = {where: error for where, (_, error) in summary.items()
                   if error is not None and (error[0] != 1 or "element 1 " not in error[1])}
    assert not misreported, summary
    # the same rows and the same failing row wherever the chunks end (the wording may say more or less)
    assert len({repr((rows, error and error[0])) for rows, error in summary.values()}) == 1, summary


# -- regressions: divergences found while writing these tests, each pinned by its smallest inputs ----------

async def test_json_lines_starting_with_blank_lines_keep_their_line_numbers() -> None:
    """Row numbers are line numbers: the blank lines before the first row count (as in iter_rows)."""
    for data in (b'\n\n{"text": "a"}\n{"text": "b"}\n', BOM + b'\n{"text": "a"}', b'\r\n{"text": "a"}\n'):
        await assert_same_reading(data, "jsonl")


async def test_a_second_closing_bracket_is_data_after_the_end_of_the_array() -> None:
    for data in (b'[{"text": "a"}]]', b'[{"text": "a"}] ]', b'[{"text": "a"}]\n]\n'):
        await assert_same_reading(data, "json")


async def test_data_after_an_empty_array_is_reported_as_such() -> None:
    for data in (b"[] x", b"[]]", b'[] {"text": "a"}'):
        await assert_same_reading(data, "json")


async def test_a_truncated_array_whose_last_element_ends_with_a_bracket_is_not_closed() -> None:
    """Only the array's own "]" closes it: a file cut after an inner array's "]" is not closed (row by row:
    the element is a row and the next one reports "not closed"), and that "]" is not taken away from the
    element it belongs to."""
    for data in (b'[{"text": "a"}, [1, 2]', b"[[]", b'[{"text": "a"}, {"text": "b", "list": []',
                 b'[{"text": "a"}, [1, {"text": "}, {"}]\n'):
        await assert_same_reading(data, "json")


async def test_a_file_cut_inside_an_escape_reports_the_row_by_row_message() -> None:
    """The last block loses its trailing whitespace, which the decoder's message of a string cut right after
    a backslash or an escape depends on (row by row: "Invalid \\escape" / "Unterminated string")."""
    for data in (b'["a\\ ', b'[{"text": "a\\ \n', b'["\\u00fc ', b'[{"text": "x"}, {"text": "}, {\\u00fc\t'):
        await assert_same_reading(data, "json")


# -- prepare_block: rows in, binary COPY out ---------------------------------------------------------------

SCHEMA = {"data": [{"name": "text", "type": "text"}],
          "controls": [{"name": "sentiment", "type": "single_choice", "source": "text", "options": ["pos", "neg"]}]}


def _row_context(**kw: Any) -> RowContext:
    fields: dict[str, Any] = dict(
        project_id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), schema_version=3, label_schema=SCHEMA,
        pii_enabled=False, pii_policy={}, keep_original=False, pseudonym_key=os.urandom(32),
        content_hash_key=os.urandom(32), wrap_version=1, wrap_key=os.urandom(32), tasks_per_key=4,
        import_id=str(uuid.uuid4()))
    fields.update(kw)
    return RowContext(**fields)


def decode_copy(data: bytes) -> list[list[bytes | None]]:
    """PostgreSQL's binary COPY: header, then per row an int16 field count and per field an int32 length
    (-1: NULL) and the bytes, then the int16 -1 trailer."""
    assert data.startswith(COPY_HEADER) and data.endswith(COPY_TRAILER)
    pos, end = len(COPY_HEADER), len(data) - len(COPY_TRAILER)
    rows = []
    while pos < end:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        assert count == len(TASK_COPY_COLUMNS)
        fields: list[bytes | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if length == -1:
                fields.append(None)
            else:
                assert length >= 0 and pos + length <= end
                fields.append(bytes(data[pos:pos + length]))
                pos += length
        rows.append(fields)
    assert pos == end
    return rows


def _task_texts(ctx: RowContext, result: ChunkResult, copy: list[list[bytes | None]]) -> list[tuple[int, str]]:
    """(row_number, text) of each decoded COPY row, decrypting its payload with its data key."""
    column = {name: i for i, name in enumerate(TASK_COPY_COLUMNS)}
    keys = {key_id: wrapped for key_id, _, wrapped in result.keys}
    out = []
    for fields in copy:
        key_id = fields[column["key_id"]].decode()
        wrapped = keys[key_id]
        dek = AESGCM(ctx.wrap_key).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(ctx.wrap_version, key_id))
        task_id = uuid.UUID(bytes=fields[column["id"]])
        payload = orjson.loads(decrypt_task_payload(dek, task_id, fields[column["data_enc"]], purpose="data"))
        (number,) = struct.unpack(">q", fields[column["row_number"]])
        out.append((number, payload["data"]["text"]))
    return out


async def test_prepare_block_encodes_its_rows_as_binary_copy_numbered_from_the_block_start() -> None:
    ctx = _row_context()
    elements = [{"text": "one"}, {"txt": "no text"}, {"text": "}, {\"text\": \"two\"}"}, 42, {"text": "three"},
                {"text": "one"}, {"text": "bad \udcff"}, {"text": "four ü"}]
    data = ", ".join(json.dumps(e) for e in elements).encode().replace(b"\\udcff", b"\xff")
    result = prepare_block(ctx, Block(data + b"]", "json", last=True))  # the file's last block: up to its "]"
    assert result.count == 8 and result.tail is None and result.file_error is None
    assert result.rows == [1, 3, 5, 6, 8]
    assert sorted({e.row for e in result.errors}) == [2, 4, 7] and result.invalid_rows == 3
    assert len(result) == 5 and len(result.row_offsets) == 5
    copy_rows = handoff.claim(result.copy_rows)
    base = 1000
    rebase_rows(copy_rows, result.row_offsets, result.rows, base)
    result.copy_rows = copy_rows
    copy = decode_copy(result.task_rows())
    assert _task_texts(ctx, result, copy) == [(1001, "one"), (1003, '}, {"text": "two"}'), (1005, "three"),
                                              (1006, "one"), (1008, "four ü")]
    column = {name: i for i, name in enumerate(TASK_COPY_COLUMNS)}
    content_hash = hmac_sha256(ctx.content_hash_key)
    for i, fields in enumerate(copy):
        assert str(uuid.UUID(bytes=fields[column["id"]])) == result.task_ids[i]
        assert fields[column["content_hash"]] == result.content_hashes[i]
        assert fields[column["key_id"]].decode() == result.keys[result.task_keys[i]][0]
        assert fields[column["original_key_id"]] is None and fields[column["original_enc"]] is None
        assert fields[column["pii_counts"]] == b"\x01{}"
        assert fields[column["has_predictions"]] == b"\x00"
        assert fields[column["project_id"]] == uuid.UUID(ctx.project_id).bytes
        assert fields[column["org_id"]] == uuid.UUID(ctx.org_id).bytes
        assert fields[column["schema_version"]] == struct.pack(">i", 3)
        assert fields[column["import_id"]] == uuid.UUID(ctx.import_id).bytes
    texts = ["one", '}, {"text": "two"}', "three", "one", "four ü"]
    assert result.content_hashes == [
        content_hash(orjson.dumps({"data": {"text": t}, "predictions": []}, option=orjson.OPT_SORT_KEYS))
        for t in texts]
    assert result.content_hashes[0] == result.content_hashes[3]  # the worker does not deduplicate
    # a selection of the tasks is exactly those rows, in that order
    assert [n for n, _ in _task_texts(ctx, result, decode_copy(result.task_rows([4, 1, 2])))] == [1008, 1003, 1005]
    assert decode_copy(result.task_rows([])) == []


async def test_blocks_cut_from_a_file_give_copy_rows_with_the_file_row_numbers() -> None:
    ctx = _row_context(tasks_per_key=3)
    texts = [f"row {i} " + "}, {" * (i % 5) + "x" * (i * 37 % 900) for i in range(1, 61)]
    elements: list[Any] = [{"text": t} for t in texts]
    elements[20] = {"wrong": 1}
    elements[41] = [1, 2]
    data = ("[" + ",\n ".join(json.dumps(e) for e in elements) + "]").encode()
    rows_before, carry, blocks = 0, None, 0
    numbered: list[tuple[int, str]] = []
    errors: list[int] = []
    async for block in cut_blocks(_chunks(data, 1500), "json", 4096):
        blocks += 1
        if carry is not None:
            block = replace(block, data=carry + bytes(block.data))
            carry = None
        result = prepare_block(ctx, block)
        assert result.file_error is None
        if result.tail is not None:
            carry = bytes(block.data[result.tail:])
        result.copy_rows = handoff.claim(result.copy_rows)
        rebase_rows(result.copy_rows, result.row_offsets, result.rows, rows_before)
        numbered += _task_texts(ctx, result, decode_copy(result.task_rows()))
        errors += [rows_before + e.row for e in result.errors]
        rows_before += result.count
    assert blocks > 5 and carry is None and rows_before == 60
    assert numbered == [(i, t) for i, t in enumerate(texts, 1) if i not in (21, 42)]
    assert sorted(set(errors)) == [21, 42]


async def test_prepare_block_takes_and_gives_large_data_as_handoffs() -> None:
    assert handoff.USABLE, "/dev/shm is not writable here"
    ctx = _row_context()
    texts = [f"large {i} " + "y" * 10_000 for i in range(12)]
    data = ", ".join(json.dumps({"text": t}) for t in texts).encode() + b"]"
    sent = handoff.stash(data)
    assert isinstance(sent, handoff.Handoff) and os.path.exists(sent.path)
    result = prepare_block(ctx, Block(sent, "json", last=True))
    assert not os.path.exists(sent.path)  # the worker took the block
    assert isinstance(result.copy_rows, handoff.Handoff) and result.copy_rows.size >= handoff.SMALLEST
    path = result.copy_rows.path
    assert os.path.basename(path).startswith(f"{handoff.PREFIX}{os.getpid()}-") and os.path.exists(path)
    copy_rows = handoff.claim(result.copy_rows)
    assert not os.path.exists(path) and len(copy_rows) == result.copy_rows.size
    result.copy_rows = copy_rows
    rebase_rows(copy_rows, result.row_offsets, result.rows, 7)
    assert _task_texts(ctx, result, decode_copy(result.task_rows())) == [(8 + i, t) for i, t in enumerate(texts)]
    small = prepare_block(ctx, Block(b'{"text": "small"}]', "json", last=True))
    assert isinstance(small.copy_rows, bytearray)  # under 64 KiB: through the pipe as it is


# -- handoff -------------------------------------------------------------------------------------------------

def _handoff_files(pid: int) -> set[str]:
    prefix = f"{handoff.PREFIX}{pid}-"
    return {name for name in os.listdir(handoff.DIRECTORY) if name.startswith(prefix)}


def test_a_handoff_round_trip_leaves_no_file() -> None:
    assert handoff.USABLE
    before = _handoff_files(os.getpid())
    data = os.urandom(handoff.SMALLEST + 12_345)
    item = handoff.stash(data)
    assert isinstance(item, handoff.Handoff) and item.size == len(data)
    assert os.path.dirname(item.path) == handoff.DIRECTORY and os.stat(item.path).st_mode & 0o777 == 0o600
    out = handoff.claim(item)
    assert isinstance(out, bytearray) and out == data
    assert not os.path.exists(item.path)
    with pytest.raises(FileNotFoundError):
        handoff.claim(item)  # once only
    for inline in (b"", b"x" * (handoff.SMALLEST - 1), bytearray(b"small")):
        assert handoff.stash(inline) is inline
        assert handoff.claim(inline) == inline and isinstance(handoff.claim(inline), bytearray)
    assert handoff.claim(memoryview(b"view")) == b"view"
    assert _handoff_files(os.getpid()) == before


def test_discard_removes_a_handoff_and_ignores_anything_else() -> None:
    item = handoff.stash(bytearray(handoff.SMALLEST))
    assert os.path.exists(item.path)
    handoff.discard(item)
    assert not os.path.exists(item.path)
    handoff.discard(item)  # already gone: no error
    handoff.discard(b"inline bytes")
    handoff.discard(None)


def test_an_imports_handoff_files_are_reused_and_removed_at_its_end() -> None:
    before = _handoff_files(os.getpid())
    files = handoff.HandoffFiles()
    first, second = files.take(), files.take()
    assert first != second and os.stat(first).st_mode & 0o777 == 0o600
    big, smaller = os.urandom(handoff.SMALLEST + 999), os.urandom(handoff.SMALLEST + 10)
    item = handoff.stash(big, first)
    assert item == handoff.Handoff(first, len(big), kept=True)
    assert handoff.claim(item) == big and os.path.exists(first)  # read, not removed: the owner reuses it
    handoff.discard(item)
    assert os.path.exists(first)  # only its owner removes it
    files.release(item)
    assert files.take() == first  # given back: taken again, not a new file
    item = handoff.stash(smaller, first)  # shorter than what the file held: exactly the new bytes come back
    assert handoff.claim(item) == smaller
    assert handoff.stash(b"small", second) == b"small"  # small data stays inline
    files.release(handoff.stash(big))  # a one-off handoff released through the set is removed
    files.give_back(first)
    files.give_back(first)  # twice: still handed out once
    assert files.take() == first and files.take() not in (first,)
    files.close()
    assert _handoff_files(os.getpid()) == before
    with pytest.raises(FileNotFoundError):
        handoff.stash(big, first)  # after the import: its files are gone


async def test_prepare_block_writes_its_rows_into_the_given_file() -> None:
    files = handoff.HandoffFiles()
    try:
        rows = [{"text": f"row {i} " + "w" * 300} for i in range(400)]
        data = (", ".join(json.dumps(r) for r in rows) + ",").encode()
        into, out = files.take(), files.take()
        result = prepare_block(_row_context(), Block(handoff.stash(data, into), "json"), out)
        assert isinstance(result.copy_rows, handoff.Handoff) and result.copy_rows.path == out
        copy_rows = handoff.claim(result.copy_rows)
        assert len(result) == 400 and len(copy_rows) == result.copy_rows.size
        assert os.path.exists(into) and os.path.exists(out)
    finally:
        files.close()


def test_sweep_removes_the_files_of_dead_processes_only() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead_pid = int(child.stdout)
    dead = os.path.join(handoff.DIRECTORY, f"{handoff.PREFIX}{dead_pid}-{os.urandom(8).hex()}")
    with open(dead, "wb") as f:
        f.write(b"left behind")
    mine = handoff.stash(os.urandom(handoff.SMALLEST))
    old_but_alive = handoff.stash(os.urandom(handoff.SMALLEST))
    an_hour_ago = time.time() - 7200
    os.utime(old_but_alive.path, (an_hour_ago, an_hour_ago))
    try:
        removed = handoff.sweep()
        assert not os.path.exists(dead)
        assert not os.path.exists(old_but_alive.path)  # older than an hour: abandoned whoever wrote it
        assert os.path.exists(mine.path)  # the current process's, fresh: kept
        assert removed >= 2
        assert handoff.claim(mine)
    finally:
        for path in (dead, mine.path, old_but_alive.path):
            if os.path.exists(path):
                os.unlink(path)


# -- hashing and ids -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key_length", [0, 1, 32, 64, 65, 200])
def test_hmac_with_the_pads_hashed_once_is_hmac_sha256(key_length: int) -> None:
    rng = random.Random(key_length)
    key = rng.randbytes(key_length)
    digest = hmac_sha256(key)
    for message in (b"", b"x", rng.randbytes(63), rng.randbytes(64), rng.randbytes(1500)):
        assert digest(message) == hmac.digest(key, message, "sha256")
        assert digest(message) == digest(message)  # the pads are not consumed by a call


def test_task_ids_are_uuid7_with_the_time_first() -> None:
    ms = 1_767_225_600_123
    first = task_uuid(os.urandom(16), ms)
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first.int >> 80 == ms and first.bytes[:6] == ms.to_bytes(6, "big")
    assert task_uuid(b"\xff" * 16, ms).version == 7 and task_uuid(b"\x00" * 16, ms).variant == uuid.RFC_4122
    now = time.time_ns() // 1_000_000
    current = task_uuid(os.urandom(16))
    assert abs((current.int >> 80) - now) < 5_000
    assert task_uuid(os.urandom(16), ms + 1) > first  # time-ordered
    ids = {task_uuid(os.urandom(16), ms) for _ in range(5000)}
    assert len(ids) == 5000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)


def test_a_block_of_whole_objects_is_parsed_in_one_call_and_read_as_element_by_element() -> None:
    """The one-call parse (`_whole_block`) takes the common block and gives exactly what reading it element by
    element gives; anything else (a cut inside a string, a non-object, an empty or over-long block, the last
    block) is left to the element-by-element reading."""
    from services.api.imports import blocks

    def both(data: bytes, **kw: Any) -> tuple[list | None, list, int]:
        block = Block(data, "json", **kw)
        fast = blocks._whole_block(block, ChunkResult())
        slow_result = ChunkResult()
        slow = blocks._element_rows(block, slow_result) if fast is not None else []
        return fast, slow, slow_result.count

    common = b'{"data": {"text": "a}, {b"}}, \n{"text": "\\u00fc \xc3\xbc"}, {"x": [1, {"y": null}]},'
    fast, slow, count = both(common)
    assert fast is not None and len(fast) == 3 == count
    # (the element-by-element reading passes elements it found with the exact scanner on as text)
    assert fast == [(n, v if isinstance(v, dict) else orjson.loads(v)) for n, v in slow]
    assert fast[0] == (1, {"data": {"text": "a}, {b"}})

    for data, kw in [(b'{"text": "cut}, {', {}),  # a cut inside a string: the piece does not parse
                     (b'{"a": 1}, [1], ', {}),  # not an object: the exact reading names it
                     (b" , ", {}), (b"", {}),  # nothing to parse
                     (b'{"a": 1}, {"b": 2}', {}),  # no comma at the end: not cut at a separator
                     (b'{"a": 1},', {"last": True}),  # the last block has its own rules ("]", truncation)
                     (b'{"a": "' + b"x" * MAX_ROW_BYTES + b'"},', {})]:  # longer than a row may be
        assert blocks._whole_block(Block(data, "json", **kw), ChunkResult()) is None, data[:40]


async def test_blocks_are_cut_within_the_row_limit_when_they_can_be() -> None:
    """So that the workers can parse them in one call: a block goes past `block_bytes` only when no element
    ends before it."""
    rows = [{"text": "w" * random.Random(i).randint(10, 3000)} for i in range(3000)]
    data = ("[" + ", ".join(json.dumps(r) for r in rows) + "]").encode()
    block_bytes = 64 * 1024
    sizes = [len(b.data) async for b in cut_blocks(_chunks(data, 256 * 1024), "json", block_bytes)]
    assert len(sizes) > 10 and max(sizes[:-1]) <= block_bytes


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
async def test_blocks_of_small_rows_hold_about_block_rows(fmt: str) -> None:
    """A file of small rows is cut into blocks of about `block_rows` rows, not `block_bytes` (a megabyte of
    60-byte rows is 17,000 rows: a parsed list and a result of that many objects per block in memory); a file
    of large rows is cut by bytes, as before; either way it reads exactly as row by row."""
    small = [{"data": {"text": f"{i} short"}} for i in range(20_000)]
    large = [{"data": {"text": f"{i} " + "w" * 1500}} for i in range(1_000)]
    for rows, most in ((small, 500), (large, None)):
        if fmt == "json":
            data = ("[" + ", ".join(json.dumps(r) for r in rows) + "]").encode()
        else:
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        blocks = [b async for b in cut_blocks(_chunks(data, 64 * 1024), fmt, 256 * 1024, block_rows=500)]
        counts = [bytes(b.data).count(b"\n" if fmt == "jsonl" else b'{"data"') for b in blocks]
        assert sum(counts) == len(rows)
        if most is None:
            assert len(blocks) == len(data) // (256 * 1024) + 1  # no smaller than the byte limit makes them
        else:
            assert max(counts) <= most and len(blocks) >= len(rows) // most, counts
        assert await in_blocks(data, fmt, 256 * 1024, 64 * 1024, block_rows=500) == await reference(data, fmt)
