"""JSON and JSON Lines imported in blocks (the fixture's blocks are 4 KiB, so every file here spans several):
row numbers, texts, file errors, duplicates against the unique index, and no handoff left in /dev/shm."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import sqlalchemy as sa

from services.api.imports import handoff
from tests.conftest import wait_until
from tests.integration.ingest.conftest import IngestEnv


def json_array(rows: list[Any], separator: str = ", ") -> bytes:
    return ("[" + separator.join(json.dumps(r) for r in rows) + "]").encode()


def json_lines(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def _stored_rows(ingest: IngestEnv, project_id: str, import_id: str | None = None) -> list[int]:
    """The row numbers of the project's tasks (of one import), as stored, in order."""
    query = "SELECT row_number FROM quorum_api.tasks WHERE project_id = :p"
    params: dict[str, Any] = {"p": project_id}
    if import_id is not None:
        query += " AND import_id = :i"
        params["i"] = import_id
    async with ingest.ctx.session_factory() as session:
        return list((await session.execute(sa.text(query + " ORDER BY row_number"), params)).scalars())


async def _texts_by_row(ingest: IngestEnv, project_id: str, import_id: str | None = None) -> dict[int, str]:
    """row_number → text of every task (of one import), read back (decrypted) through the API."""
    headers = await ingest.manager()
    out: dict[int, str] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"include_data": "true", "limit": 500}
        if import_id:
            params["import_id"] = import_id
        if cursor:
            params["cursor"] = cursor
        r = await ingest.client.get(f"/api/v1/projects/{project_id}/tasks", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        for item in body["items"]:
            assert item["row_number"] not in out
            out[item["row_number"]] = item["data"]["text"]
        cursor = body["next_cursor"]
        if not cursor:
            return out


async def test_elements_larger_than_a_block_and_separators_in_strings_keep_their_rows(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    tricky = ["}, {", "},{", '"}, {"text": 1', "}\n,\n{", '\\"}, {\\"', "ü → ✓ 𝄞"]
    texts = []
    for i in range(1, 25):
        text = f"row {i} " + tricky[i % len(tricky)] * (i % 4 + 1)
        if i % 3 == 0:  # 10 KiB: longer than a block
            text += " " + ("lorem }, { ipsum " * 600)[:10_000]
        texts.append(text)
    body = json_array([{"text": t} for t in texts], separator=",\n ")
    assert len(body) > 8 * ingest.ctx.settings.import_block_bytes
    op = await ingest.run_import(pid, body, "application/json")
    assert op["status"] == "succeeded", op
    assert op["counts"] == {"valid": 24, "created": 24, "duplicates": 0, "invalid": 0}
    assert op["rows_processed"] == 24
    assert await _stored_rows(ingest, pid) == list(range(1, 25))
    assert await _texts_by_row(ingest, pid) == dict(enumerate(texts, 1))


async def test_json_lines_over_several_blocks_keep_their_line_numbers(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    lines = []
    expected = {}
    for i in range(1, 81):
        if i % 17 == 0:
            lines.append(b"")  # a blank line still counts
            continue
        text = f"line {i} " + "}, {" * (i % 3) + "z" * (i * 53 % 700)
        if i == 40:
            text += "q" * 6000  # longer than a block
        lines.append(json.dumps({"text": text}).encode())
        expected[i] = text
    body = b"\r\n".join(lines) + b"\r\n"
    op = await ingest.run_import(pid, body)
    assert op["status"] == "succeeded", op
    assert op["counts"]["created"] == len(expected) and op["counts"]["invalid"] == 0
    assert await _texts_by_row(ingest, pid) == expected


async def test_a_malformed_element_in_the_middle_fails_the_import_after_the_earlier_rows(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    rows = [json.dumps({"text": f"before the break {i} " + "b" * 300}) for i in range(1, 41)]
    rows[22] = '{"text": "broken", }'  # element 23
    body = ("[" + ", ".join(rows) + "]").encode()
    assert len(body) > 3 * ingest.ctx.settings.import_block_bytes
    op = await ingest.run_import(pid, body, "application/json")
    assert op["status"] == "failed", op
    assert op["error"] == "row 23: malformed JSON in element 23: Expecting property name enclosed in double quotes"
    assert op["counts"] == {"valid": 22, "created": 22, "duplicates": 0, "invalid": 1}
    assert [e["row"] for e in op["errors"]] == [23] and "element 23" in op["errors"][0]["message"]
    assert await _stored_rows(ingest, pid) == list(range(1, 23))

    # a missing comma between elements 30 and 31, in a later block
    rows = [json.dumps({"text": f"second file {i} " + "c" * 300}) for i in range(1, 41)]
    body = ("[" + ", ".join(rows[:30]) + " " + ", ".join(rows[30:]) + "]").encode()
    op = await ingest.run_import(pid, body, "application/json")
    assert op["status"] == "failed", op
    assert op["error"] == "row 31: malformed JSON after element 30: ',' or ']' expected"
    assert op["counts"]["created"] == 30 and op["counts"]["invalid"] == 1
    assert await _stored_rows(ingest, pid, op["id"]) == list(range(1, 31))


async def test_reimports_and_files_mixing_new_and_imported_rows_create_only_the_new_ones(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    old = [{"text": f"already imported {i} " + "o" * 250} for i in range(60)]
    first = await ingest.run_import(pid, json_array(old), "application/json")
    assert first["counts"] == {"valid": 60, "created": 60, "duplicates": 0, "invalid": 0}

    again = await ingest.run_import(pid, json_array(old), "application/json")
    assert again["status"] == "succeeded"
    assert again["counts"] == {"valid": 60, "created": 0, "duplicates": 60, "invalid": 0}
    as_lines = await ingest.run_import(pid, json_lines(old[::-1]))  # another format, another order: same tasks
    assert as_lines["counts"] == {"valid": 60, "created": 0, "duplicates": 60, "invalid": 0}

    # new rows first (blocks without a duplicate), then only old ones (blocks without a new one), then mixed
    new = [{"text": f"brand new {i} " + "n" * 250} for i in range(30)]
    mixed = new[:12] + old[:25] + [row for pair in zip(new[12:], old[25:43], strict=True) for row in pair]
    mixed += old[43:]
    assert len(mixed) == 90
    op = await ingest.run_import(pid, json_array(mixed), "application/json")
    assert op["status"] == "succeeded", op
    assert op["counts"] == {"valid": 90, "created": 30, "duplicates": 60, "invalid": 0}
    positions = [i for i, row in enumerate(mixed, 1) if row in new]
    assert await _stored_rows(ingest, pid, op["id"]) == positions
    assert await _texts_by_row(ingest, pid, op["id"]) == {i: mixed[i - 1]["text"] for i in positions}
    assert await _texts_by_row(ingest, pid, first["id"]) == {i: r["text"] for i, r in enumerate(old, 1)}
    async with ingest.ctx.session_factory() as session:
        count = (await session.execute(sa.text("SELECT count(*) FROM quorum_api.tasks WHERE project_id = :p"),
                                       {"p": pid})).scalar_one()
    assert count == 90


async def test_duplicates_inside_one_file_are_counted_once(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    rows = [{"text": f"unique {i} " + "u" * 250} for i in range(40)]
    rows[1] = rows[0]  # twins in one block
    rows[33] = rows[4]  # in a later block
    rows[39] = rows[4]
    expected_unique = len({json.dumps(r, sort_keys=True) for r in rows})
    op = await ingest.run_import(pid, json_array(rows), "application/json")
    assert op["status"] == "succeeded", op
    assert op["counts"]["created"] == expected_unique
    assert op["counts"]["duplicates"] == 40 - expected_unique and op["counts"]["invalid"] == 0
    stored = await _stored_rows(ingest, pid)
    assert len(stored) == expected_unique
    assert {2, 34, 40}.isdisjoint(stored) and {1, 5}.issubset(stored)  # the first occurrence is the task
    op = await ingest.run_import(pid, json_lines([{"text": "twin"}] * 3 + [{"text": "solo"}]))
    assert op["counts"] == {"valid": 4, "created": 2, "duplicates": 2, "invalid": 0}


async def test_blank_lines_before_the_first_row_and_a_second_closing_bracket(ingest: IngestEnv) -> None:
    """As row by row (parsing.iter_rows): JSON Lines row numbers are line numbers from the file's first line,
    and a JSON array followed by another "]" is data after its end (the import fails there)."""
    pid = await ingest.create_project()
    op = await ingest.run_import(pid, b'\n\n{"text": "third line"}\n{"text": "fourth line"}\n')
    assert op["status"] == "succeeded" and op["counts"]["created"] == 2, op
    assert await _texts_by_row(ingest, pid, op["id"]) == {3: "third line", 4: "fourth line"}
    op = await ingest.run_import(pid, b'[{"text": "closed twice"}]]', "application/json")
    assert op["status"] == "failed", op
    assert op["error"] == "row 2: unexpected data after the end of the JSON array"


def _our_handoffs() -> list[str]:
    """Handoff files of this process or of its (live) import workers."""
    ours = []
    for name in os.listdir(handoff.DIRECTORY):
        if not name.startswith(handoff.PREFIX):
            continue
        pid = int(name[len(handoff.PREFIX):].split("-", 1)[0])
        if pid == os.getpid() or _parent(pid) == os.getpid():
            ours.append(name)
    return ours


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


async def test_no_handoff_file_outlives_an_import(ingest: IngestEnv) -> None:
    assert handoff.USABLE, "/dev/shm is not writable here: the handoff path cannot be tested"
    settings = ingest.ctx.settings
    saved = settings.import_block_bytes
    settings.import_block_bytes = 64 * 1024  # blocks and their COPY rows at least handoff.SMALLEST: via tmpfs
    assert settings.import_block_bytes >= handoff.SMALLEST
    try:
        pid = await ingest.create_project()
        rows = [{"text": f"through shared memory {i} " + "m" * 2000} for i in range(105)]
        body = json_array(rows)
        assert 200 * 1024 < len(body) < settings.max_upload_bytes
        op = await ingest.run_import(pid, body, "application/json")
        assert op["status"] == "succeeded" and op["counts"]["created"] == 105, op
        lines = json_lines([{"text": f"lines through shared memory {i} " + "l" * 2000} for i in range(105)])
        op = await ingest.run_import(pid, lines)
        assert op["status"] == "succeeded" and op["counts"]["created"] == 105, op
        assert await _stored_rows(ingest, pid) == sorted(list(range(1, 106)) * 2)
        # an element that never parses: every later block is redone joined to it until the file ends
        broken = [json.dumps({"text": f"failing {i} " + "f" * 2000}) for i in range(100)]
        broken[10] = '{"text": "never closed ' + "f" * 2000 + '}'
        op = await ingest.run_import(pid, ("[" + ", ".join(broken) + "]").encode(), "application/json")
        assert op["status"] == "failed" and op["counts"]["created"] == 10, op
        assert op["error"].startswith("row 11: malformed JSON in element 11")
        assert await wait_until(lambda: not _our_handoffs(), timeout=10.0)
    finally:
        settings.import_block_bytes = saved


async def test_many_blocks_in_flight_keep_their_own_handoff_files(ingest: IngestEnv) -> None:
    """Blocks of 128 KiB (above handoff.SMALLEST, so they and their COPY rows cross in files), dozens in a row:
    the workers run ahead of the committer, and each reused handoff file is handed out again only once the
    side reading it is done with it. Every row arrives once, with its own text."""
    rows = [{"text": f"row {i} " + "abcdefghij" * (i % 50 + 100)} for i in range(2500)]  # ~3.4 MB
    settings = ingest.ctx.settings
    settings.import_block_bytes, settings.max_upload_bytes, cap = 128 * 1024, 8 * 1024 * 1024, settings.max_upload_bytes
    try:
        pid = await ingest.create_project()
        op = await ingest.run_import(pid, json_array(rows), "application/json")
    finally:
        settings.import_block_bytes, settings.max_upload_bytes = 4096, cap
    assert op["status"] == "succeeded" and op["counts"]["created"] == 2500, op
    assert await _texts_by_row(ingest, pid) == {i + 1: r["text"] for i, r in enumerate(rows)}
