"""The inlined path for common rows (`_prepare_plain`) stores exactly what the general path stores."""

from __future__ import annotations

import os
import uuid

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.api.imports.pipeline import RowContext, decrypt_task_payload, prepare_rows
from shared.crypto.datakeys import _wrap_aad

SCHEMA = {"data": [{"name": "text", "type": "text"}, {"name": "img", "type": "image", "required": False}],
          "controls": [{"name": "sentiment", "type": "single_choice", "source": "text", "options": ["pos", "neg"]}]}
ROWS = [
    {"data": {"text": "héllo ✓", "img": "s3://bucket/a.png"}},  # Label Studio task
    {"text": "plain object", "extra": 1},  # a bare data object keeps its other fields
    {"data": {"text": "   "}},  # blank required field
    {"text": None},  # missing required field
    {"data": {"text": "empty predictions"}, "predictions": []},
    {"data": {"text": "with meta"}, "meta": {"a": 1}, "id": 7},
    {"data": {"text": "unknown key"}, "foo": 1},  # not a Label Studio key
    {"text": 5},  # not a string
    {"data": "not an object", "text": "t"},  # "data" is not a task's data here
    {"data": {"text": "with a prediction"}, "predictions": [
        {"model_version": "m1", "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                            "value": {"choices": ["pos"]}}]}]},
    {"data": {"text": "no image", "img": None}},
    {"data": {"text": "image not a string", "img": 3}},
]


def _context(wrap_key: bytes) -> RowContext:
    key = os.urandom(32)
    return RowContext(project_id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), schema_version=3, label_schema=SCHEMA,
                      pii_enabled=False, pii_policy={}, keep_original=False, pseudonym_key=key, content_hash_key=key,
                      wrap_version=1, wrap_key=wrap_key, tasks_per_key=4, import_id=str(uuid.uuid4()))


def _stored(result, wrap_key: bytes) -> list[tuple[int, bytes, bytes, bytes]]:  # noqa: ANN001
    """(row, content hash, decrypted payload, the COPY columns after the ciphertext) of every task."""
    ends = [*result.row_offsets[1:], len(result.copy_rows)]
    out = []
    for i, (row, task_id) in enumerate(zip(result.rows, result.task_ids, strict=True)):
        key_id, version, wrapped = result.keys[result.task_keys[i]]
        dek = AESGCM(wrap_key).decrypt(wrapped[:12], wrapped[12:], _wrap_aad(version, key_id))
        encoded = bytes(result.copy_rows[result.row_offsets[i]:ends[i]])
        at = 2 + (4 + 8) + (4 + 16) + (4 + 32)  # field count, row number, id, content hash
        at += 4 + int.from_bytes(encoded[at:at + 4], "big")  # key id
        size = int.from_bytes(encoded[at:at + 4], "big")
        payload = decrypt_task_payload(dek, uuid.UUID(task_id), encoded[at + 4:at + 4 + size], purpose="data")
        rest = encoded[at + 4 + size:-12]  # up to created_at (its length and value differ by a clock tick)
        out.append((row, result.content_hashes[i], payload, rest))
    return out


def test_plain_rows_store_what_the_general_path_stores() -> None:
    wrap_key = os.urandom(32)
    ctx = _context(wrap_key)
    rows = list(enumerate(ROWS, 1))
    inlined = prepare_rows(ctx, rows, parsed=True)  # parsed dicts: the common ones take the inlined path
    general = prepare_rows(ctx, [(n, orjson.dumps(r)) for n, r in rows], parsed=False)  # always the general path
    assert inlined.rows == general.rows == [1, 2, 5, 6, 9, 10, 11]
    assert [(e.row, e.field, e.message) for e in inlined.errors] == \
        [(e.row, e.field, e.message) for e in general.errors]
    assert inlined.invalid_rows == general.invalid_rows == 5
    assert _stored(inlined, wrap_key) == _stored(general, wrap_key)
    assert inlined.prediction_values == general.prediction_values == ["pos"]
    assert len(inlined.keys) == len(general.keys) == 2  # 7 tasks, 4 per data key


def test_the_inlined_payload_is_the_canonical_task() -> None:
    wrap_key = os.urandom(32)
    result = prepare_rows(_context(wrap_key), [(1, {"data": {"text": "b", "img": "x"}, "meta": {}})], parsed=True)
    [(_, _, payload, _)] = _stored(result, wrap_key)
    assert orjson.loads(payload) == {"data": {"img": "x", "text": "b"}, "predictions": [],
                                     "redaction": {"counts": {}, "entities": []}}
