"""Row → task, the CPU-bound part of an import: validate, hash, redact, encrypt. Runs in worker processes.

Imports nothing of the web stack so a worker process stays small. A row becomes either a complete task in
`ChunkResult` (encrypted and encoded as a binary COPY row) or a list of errors — never half a task.

Data keys: tasks share a data key in groups of `tasks_per_key` consecutive tasks of a chunk (setting
`import_tasks_per_data_key`; 1 = a key per task), scope `import-tasks:<operation>`. A key row costs the database as
much as a third of a task row (its primary key, scope and KEK indexes): a key per task made the data-key
COPY about 40 % of the database time of an import (`benchmarks/ingest_db_ceiling.py`). Nonces are random per
task and the AAD binds the task id, so tasks under one key cannot be swapped or replayed into each other.
Erasing one task re-encrypts its live group siblings under a fresh key, then destroys the old one
(services/api/erasure): the erased task's ciphertext, wherever a copy of it lives, has no key left, at the
cost of re-encrypting at most `tasks_per_key - 1` small payloads per erased task.
"""

from __future__ import annotations

import gc
import hashlib
import os
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.datakeys import _wrap_aad

MAX_ROW_BYTES = 1024 * 1024
MAX_ERRORS_PER_ROW = 10
NONCE_BYTES = 12
TASK_FORMAT = b"\x01"  # ciphertext layout version: 0x01 ‖ nonce ‖ AES-256-GCM(payload) ‖ tag

LS_TYPES = {
    "single_choice": {"choices"},
    "multi_choice": {"choices"},
    "spans": {"labels"},
    "bbox": {"rectanglelabels", "rectangle"},
    "polygon": {"polygonlabels", "polygon"},
    "time_segments": {"labels"},
    "text": {"textarea"},
    "number": {"number"},
    "rating": {"rating"},
}
LS_TOP_KEYS = {"data", "predictions", "id", "meta", "created_at", "updated_at"}
MEDIA_TYPES = {"image", "audio", "video", "document", "url"}


@dataclass(frozen=True)
class RowContext:
    """Everything a worker needs for one project's rows (pickled per chunk; small)."""

    project_id: str
    org_id: str
    schema_version: int
    label_schema: dict[str, Any]
    pii_enabled: bool
    pii_policy: dict[str, Any]  # shared.pii.RedactionPolicy fields
    keep_original: bool
    pseudonym_key: bytes
    content_hash_key: bytes
    wrap_version: int
    wrap_key: bytes
    from_csv: bool = False
    tasks_per_key: int = 1
    import_id: str | None = None  # the operation the tasks come from

    def __repr__(self) -> str:
        return f"RowContext(project={self.project_id}, schema v{self.schema_version}, pii={self.pii_enabled})"


@dataclass
class RowError:
    row: int
    field: str | None
    message: str


# PostgreSQL's binary COPY: what the workers encode the tasks in, so the server process only forwards bytes.
# `row_number` comes first, at a fixed offset in every row, so it can be rebased without re-encoding
# (a block's rows are numbered from 1 until the committer knows where the block starts).
TASK_COPY_COLUMNS = ["row_number", "id", "content_hash", "key_id", "data_enc", "original_key_id", "original_enc",
                     "pii_counts", "has_predictions", "project_id", "org_id", "schema_version", "import_id",
                     "created_at"]
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
ROW_NUMBER_AT = 2 + 4  # the row number's value follows the field count and its own length
_ROW_HEAD = struct.Struct(">hiqi16si32s")  # field count, row_number, id, content_hash
_LENGTH = struct.Struct(">i")
_NULL = _LENGTH.pack(-1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def _copy_field(value: bytes | None) -> bytes:
    return _NULL if value is None else _LENGTH.pack(len(value)) + value


def _jsonb_field(text: bytes) -> bytes:
    return _copy_field(b"\x01" + text)  # jsonb's binary format: version 1, then the JSON text


def rebase_rows(copy_rows: bytearray, offsets: list[int], numbers: list[int], base: int) -> None:
    """Add `base` to the row_number of every encoded row (in place)."""
    if base:
        pack_into = struct.Struct(">q").pack_into
        for offset, number in zip(offsets, numbers, strict=True):
            pack_into(copy_rows, offset + ROW_NUMBER_AT, base + number)


@dataclass
class ChunkResult:
    """A chunk's tasks as columns, the tasks rows already in binary COPY format: a few objects per chunk to
    pickle back from the worker instead of one per task, and nothing to encode in the server process."""

    rows: list[int] = field(default_factory=list)  # row number of each task (in a block: from its start)
    task_ids: list[str] = field(default_factory=list)
    content_hashes: list[bytes] = field(default_factory=list)
    copy_rows: bytearray = field(default_factory=bytearray)  # (a handoff.Handoff while between processes)
    row_offsets: list[int] = field(default_factory=list)  # where each task's row starts in copy_rows
    keys: list[tuple[str, int, bytes]] = field(default_factory=list)  # group data keys: id, KEK version, wrapped
    task_keys: list[int] = field(default_factory=list)  # each task's index into `keys`
    originals: list[tuple[int, str, int, bytes]] = field(default_factory=list)  # task index, key of its original
    pseudonyms: list[list[str]] = field(default_factory=list)
    # single_choice predictions, one entry per prediction (only tasks that have some): the task's index in
    # this chunk's columns, the control, the option, the score (None: none given), the model version
    prediction_tasks: list[int] = field(default_factory=list)
    prediction_controls: list[str] = field(default_factory=list)
    prediction_values: list[str] = field(default_factory=list)
    prediction_scores: list[float | None] = field(default_factory=list)
    prediction_models: list[str | None] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    invalid_rows: int = 0
    # Blocks (services/api/imports/blocks.py) only:
    count: int = 0  # rows the block holds, valid or not, before `tail`
    tail: int | None = None  # byte offset of an element the block does not finish (continues in the next one)
    tail_error: str | None = None  # why that element did not parse, if the next block does not finish it either
    file_error: tuple[int, str] | None = None  # (row, message): the file cannot be read past this row

    def __len__(self) -> int:
        return len(self.task_ids)

    def task_rows(self, indexes: list[int] | None = None) -> bytes:
        """The binary COPY of the tasks (all, or those at `indexes`): header, rows, trailer."""
        if indexes is None:
            return b"".join((COPY_HEADER, self.copy_rows, COPY_TRAILER))
        view = memoryview(self.copy_rows)
        ends = self.row_offsets[1:] + [len(self.copy_rows)]
        return b"".join([COPY_HEADER, *(view[self.row_offsets[i]:ends[i]] for i in indexes), COPY_TRAILER])


# -- worker-process caches ---------------------------------------------------------------------------

_REDACTORS: dict[tuple, Any] = {}


def _redactor(ctx: RowContext) -> Any:
    key = (ctx.project_id, orjson.dumps(ctx.pii_policy, option=orjson.OPT_SORT_KEYS), ctx.pseudonym_key)
    redactor = _REDACTORS.get(key)
    if redactor is None:
        from shared.pii import RedactionPolicy, Redactor

        if len(_REDACTORS) > 32:
            _REDACTORS.clear()
        redactor = _REDACTORS[key] = Redactor(RedactionPolicy.model_validate(ctx.pii_policy), ctx.pseudonym_key,
                                              name_recognizer=_name_recognizer())
    return redactor


_NAMES: list[Any] = []


def _name_recognizer() -> Any:
    """The PII engine's default, but without importing spaCy (~60 MB per worker) just to learn that no
    spaCy model is installed: look for the model packages first."""
    if not _NAMES:
        import importlib.util

        from shared.pii.names import SPACY_MODELS, GazetteerNameRecognizer, default_name_recognizer

        if any(importlib.util.find_spec(model) is not None for model in SPACY_MODELS):
            _NAMES.append(default_name_recognizer())
        else:
            _NAMES.append(GazetteerNameRecognizer())
    return _NAMES[0]


def warm_up(server_pid: int | None = None) -> None:
    """Pool initializer: pay the PII engine's import and lexicon load once per worker, and exit with the
    server even if it dies without shutting the pool down (SIGKILL, OOM)."""
    from shared.pii import Redactor

    if server_pid is not None:
        import threading

        def watch() -> None:
            while True:
                time.sleep(2.0)
                try:
                    os.kill(server_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:
                    pass

        threading.Thread(target=watch, name="server-watchdog", daemon=True).start()

    Redactor(name_recognizer=_name_recognizer()).redact("warm up John Smith john@example.com")
    # The PII engine's tables live as long as the worker: keep them out of the collector's full passes.
    gc.collect()
    gc.freeze()


# -- the chunk entry point ---------------------------------------------------------------------------

# Bytes of randomness per task: its id's 10 random bytes (of 16) and its payload's nonce; per data key: its id,
# the key, the nonce that wraps it.
_RANDOM_PER_TASK = 10 + NONCE_BYTES
_RANDOM_PER_KEY = 16 + 32 + NONCE_BYTES
_EMPTY_REPORT = b',"redaction":{"counts":{},"entities":[]}}'
_NO_PREDICTIONS = _copy_field(b"\x00")
_HAS_PREDICTIONS = _copy_field(b"\x01")
_NO_ORIGINAL = _NULL + _NULL
_NO_PII = _jsonb_field(b"{}")


@dataclass
class _ChunkState:
    """What every row of a chunk shares, computed once per chunk."""

    ctx: RowContext
    redactor: Any
    wrap_aead: AESGCM
    controls: dict[str, Any]
    skip_redaction: frozenset[str]
    actions: dict[Any, tuple[bool, str, str, str]] | None
    random: bytes
    copy_tail: bytes  # the columns every task of the chunk shares, encoded once
    plain_tail: bytes  # the columns after data_enc of a task with no original, no PII found, no predictions
    id_prefix: bytes  # the 48-bit Unix milliseconds of the chunk's task ids
    content_hash: Any  # bytes -> HMAC-SHA256 under the project's content-hash key
    offset: int = 0
    group_aead: AESGCM | None = None  # the group's data key as a cipher (its key schedule made once per group)
    group_field: bytes = b""  # the group's key id as a COPY field
    group_left: int = 0

    def take(self, n: int) -> bytes:
        """`n` fresh random bytes from the chunk's draw (one os.urandom call per chunk, not five per task)."""
        if self.offset + n > len(self.random):
            self.random = os.urandom(max(n, len(self.random)))
            self.offset = 0
        out = self.random[self.offset:self.offset + n]
        self.offset += n
        return out


def prepare_chunk(ctx: RowContext, rows: list[tuple[int, Any]]) -> ChunkResult:
    """`rows`: (row number, raw) with raw = JSON bytes/str to parse, an already parsed value, or a
    `RowError` found while splitting the file."""
    return prepare_rows(ctx, rows, parsed=False)


def prepare_rows(ctx: RowContext, rows: list[tuple[int, Any]], *, parsed: bool,
                 result: ChunkResult | None = None) -> ChunkResult:
    """`parsed`: dicts and lists in `rows` came from orjson (valid UTF-8, nothing to re-check)."""
    result = ChunkResult() if result is None else result
    redactor = _redactor(ctx) if ctx.pii_enabled else None
    schema = ctx.label_schema
    now_us = time.time_ns() // 1000
    copy_tail = b"".join((_copy_field(uuid.UUID(ctx.project_id).bytes), _copy_field(uuid.UUID(ctx.org_id).bytes),
                          _copy_field(struct.pack(">i", ctx.schema_version)),
                          _copy_field(uuid.UUID(ctx.import_id).bytes if ctx.import_id else None),
                          _copy_field(struct.pack(">q", now_us - _PG_EPOCH_US))))
    state = _ChunkState(
        ctx=ctx, redactor=redactor, wrap_aead=AESGCM(ctx.wrap_key),
        controls={c["name"]: c for c in schema["controls"]},
        skip_redaction=frozenset(f["name"] for f in schema["data"] if not f.get("redact", True)),
        actions=_action_table(redactor) if redactor is not None else None,
        random=os.urandom(_RANDOM_PER_TASK * max(1, len(rows))),
        copy_tail=copy_tail, plain_tail=_NO_ORIGINAL + _NO_PII + _NO_PREDICTIONS + copy_tail,
        id_prefix=(now_us // 1000).to_bytes(6, "big"), content_hash=hmac_sha256(ctx.content_hash_key))
    plain = _plain_fields(schema) if redactor is None and parsed and not ctx.keep_original else None
    for number, raw in rows:
        if plain is not None and type(raw) is dict and _prepare_plain(state, result, number, raw, plain):
            continue
        if isinstance(raw, RowError):
            result.errors.append(raw)
            result.invalid_rows += 1
            continue
        errors: list[RowError] = []
        try:
            obj = raw if parsed and isinstance(raw, dict | list) else _parse(number, raw, errors)
            if obj is None and not errors:
                errors.append(RowError(number, None, "a task must be a JSON object, got null"))
            added = obj is not None and _prepare_row(state, result, number, obj, errors)
        except Exception as exc:  # a bug or a pathological value must cost one row, not the import
            errors = [RowError(number, None, f"row could not be processed ({type(exc).__name__})")]
            added = False
        if not added:
            result.errors.extend(errors[:MAX_ERRORS_PER_ROW])
            result.invalid_rows += 1
    return result


_PLAIN_KINDS = frozenset({"text"}) | MEDIA_TYPES


def _plain_fields(schema: dict) -> tuple[tuple[str, bool], ...] | None:
    """(name, required) of the schema's data fields when every one is a string (text or a media reference):
    rows of such schemas, without predictions and with nothing to redact, take `_prepare_plain`."""
    if not all(f["type"] in _PLAIN_KINDS for f in schema["data"]):
        return None
    return tuple((f["name"], f.get("required", True)) for f in schema["data"])


def _prepare_plain(state: _ChunkState, result: ChunkResult, number: int, obj: dict,
                   fields: tuple[tuple[str, bool], ...]) -> bool:
    """`_prepare_row` for the common row, inlined (an import spends its time here): a task whose data are
    the schema's strings, no predictions, no redaction. False: not such a row (nothing done); the general
    path then takes it, and reports what is wrong with it. Raises nothing the general path would catch."""
    data = obj.get("data")
    if type(data) is dict:
        if not obj.keys() <= LS_TOP_KEYS or obj.get("predictions"):
            return False
    else:
        data = obj
    for name, required in fields:
        value = data.get(name)
        if type(value) is not str or not value or value.isspace():
            if value is not None and type(value) is not str or required:
                return False
    try:
        canonical = orjson.dumps({"data": data, "predictions": []}, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return False
    content_hash = state.content_hash(canonical)
    fresh = state.take(_RANDOM_PER_TASK)
    id_bytes, task_id = _task_id(state.id_prefix, fresh[:10])
    if state.group_left <= 0 or state.group_aead is None:
        _new_group(state, result)
    state.group_left -= 1
    data_enc = _seal_id(state.group_aead, id_bytes, canonical[:-1] + _EMPTY_REPORT, b"data", fresh[10:])
    copy_rows = _start_row(result, state, number, id_bytes, content_hash, data_enc)
    copy_rows += state.plain_tail
    result.rows.append(number)
    result.task_ids.append(task_id)
    result.content_hashes.append(content_hash)
    result.task_keys.append(len(result.keys) - 1)
    result.pseudonyms.append([])
    return True


def _start_row(result: ChunkResult, state: _ChunkState, number: int, id_bytes: bytes, content_hash: bytes,
               data_enc: bytes) -> bytearray:
    """Encode a task's COPY row up to its ciphertext (row number, id, content hash, data key, ciphertext)."""
    copy_rows = result.copy_rows
    result.row_offsets.append(len(copy_rows))
    copy_rows += _ROW_HEAD.pack(14, 8, number, 16, id_bytes, 32, content_hash)
    copy_rows += state.group_field
    copy_rows += _LENGTH.pack(len(data_enc))
    copy_rows += data_enc
    return copy_rows


def _new_group(state: _ChunkState, result: ChunkResult) -> None:
    """Start a data-key group: a fresh data key, wrapped, for the next `tasks_per_key` tasks."""
    more = os.urandom(_RANDOM_PER_KEY)
    key_id, dek, kek_version, wrapped = _new_key(state.ctx, state.wrap_aead, more[:16], more[16:48], more[48:60])
    result.keys.append((key_id, kek_version, wrapped))
    state.group_aead, state.group_field = AESGCM(dek), _copy_field(key_id.encode())
    state.group_left = max(1, state.ctx.tasks_per_key)


def _prepare_row(state: _ChunkState, result: ChunkResult, number: int, obj: Any, errors: list[RowError]) -> bool:
    """Validate, hash, redact and encrypt one parsed row into `result`; False (and `errors`) if invalid."""
    ctx = state.ctx
    data, predictions = _split(number, obj, errors)
    if data is None:
        return False
    schema = ctx.label_schema
    _validate_data(number, data, schema, ctx.from_csv, errors)
    controls = state.controls
    if predictions:
        _validate_predictions(number, predictions, controls, data, errors)
    if errors:
        return False

    canonical = orjson.dumps({"data": data, "predictions": predictions}, option=orjson.OPT_SORT_KEYS)
    content_hash = state.content_hash(canonical)

    report: dict[str, Any] = {"counts": {}, "entities": []}
    pseudonyms: list[str] = []
    shown_data, shown_predictions = data, predictions
    redactor = state.redactor
    if redactor is not None:
        skip = state.skip_redaction
        offset_maps: dict[str, list[tuple[int, int, int, int]]] = {}
        shown_data = {}
        actions = state.actions
        for name, value in data.items():
            if name in skip:
                shown_data[name] = value
            else:
                shown_data[name] = _redact_value(redactor, value, name, report, pseudonyms, offset_maps, actions)
        if predictions:
            shown_predictions = _redact_predictions(redactor, predictions, controls, offset_maps, report,
                                                    pseudonyms, actions)

    fresh = state.take(_RANDOM_PER_TASK)
    id_bytes, task_id = _task_id(state.id_prefix, fresh[:10])
    if state.group_left <= 0 or state.group_aead is None:
        _new_group(state, result)
    state.group_left -= 1
    if report["entities"]:
        payload = orjson.dumps({"data": shown_data, "predictions": shown_predictions, "redaction": report})
    else:  # nothing redacted: what is shown is what was hashed (sorted keys; the order of keys means nothing)
        payload = canonical[:-1] + _EMPTY_REPORT
    data_enc = _seal_id(state.group_aead, id_bytes, payload, b"data", fresh[10:22])
    index = len(result.task_ids)
    copy_rows = _start_row(result, state, number, id_bytes, content_hash, data_enc)
    if ctx.keep_original and redactor is not None and report["entities"]:
        more = os.urandom(_RANDOM_PER_KEY + NONCE_BYTES)
        okey_id, odek, okek, owrapped = _new_key(ctx, state.wrap_aead, more[:16], more[16:48], more[48:60])
        result.originals.append((index, okey_id, okek, owrapped))
        original_enc = _seal_id(AESGCM(odek), id_bytes, canonical, b"original", more[60:72])
        copy_rows += _copy_field(okey_id.encode())
        copy_rows += _copy_field(original_enc)
    else:
        copy_rows += _NO_ORIGINAL
    copy_rows += _jsonb_field(orjson.dumps(report["counts"])) if report["counts"] else _NO_PII
    copy_rows += _HAS_PREDICTIONS if predictions else _NO_PREDICTIONS
    copy_rows += state.copy_tail
    result.rows.append(number)
    result.task_ids.append(task_id)
    result.content_hashes.append(content_hash)
    result.task_keys.append(len(result.keys) - 1)
    result.pseudonyms.append(sorted(set(pseudonyms)) if pseudonyms else [])
    if predictions:
        for control, value, score, model_version in _choice_predictions(shown_predictions, controls):
            result.prediction_tasks.append(index)
            result.prediction_controls.append(control)
            result.prediction_values.append(value)
            result.prediction_scores.append(score)
            result.prediction_models.append(model_version)
    return True


MODEL_VERSION_CHARS = 200


def _choice_predictions(predictions: list, controls: dict) -> list[tuple[str, str, float | None, str | None]]:
    """(control, option, score, model_version) of every single_choice region of the (validated, redacted)
    predictions: the consensus service uses them as evidence. Score: the region's, else the prediction's;
    one outside 0..1 is not a confidence and is left out."""
    out = []
    for pred in predictions:
        model_version = pred.get("model_version")
        if model_version is not None:
            model_version = str(model_version)[:MODEL_VERSION_CHARS]
        pred_score = _confidence(pred.get("score"))
        for item in pred["result"]:
            control = controls[item["from_name"]]
            if control["type"] != "single_choice":
                continue
            score = _confidence(item.get("score"))
            out.append((control["name"], item["value"]["choices"][0], pred_score if score is None else score,
                        model_version))
    return out


def _confidence(value: Any) -> float | None:
    return float(value) if _num(value) and 0.0 <= value <= 1.0 else None


# -- ids and encryption ----------------------------------------------------------------------------------

def task_uuid(random16: bytes, unix_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Time-ordered ids land at the
    right edge of the tasks primary key instead of on a random leaf: +15 % COPY rate
    (`benchmarks/ingest_db_ceiling.py`). The id reveals when the task was imported, nothing else."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    return uuid.UUID(bytes=_task_id((ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big"), random16[6:])[0])


def _task_id(ms48: bytes, random10: bytes) -> tuple[bytes, str]:
    """A UUIDv7's 16 bytes and its canonical text, without building a `uuid.UUID`."""
    raw = ms48 + bytes((0x70 | random10[0] & 0x0F, random10[1], 0x80 | random10[2] & 0x3F)) + random10[3:]
    h = raw.hex()
    return raw, f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hmac_sha256(key: bytes) -> Any:
    """HMAC-SHA256 with the key's pads hashed once: `hmac.digest` sets the key up again on every call, which
    costs twice the hashing of a 1.5 kB task."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(message: bytes) -> bytes:
        h = inner.copy()
        h.update(message)
        o = outer.copy()
        o.update(h.digest())
        return o.digest()

    return digest


def _new_key(ctx: RowContext, wrap_aead: AESGCM, id_random: bytes, dek: bytes, nonce: bytes
             ) -> tuple[str, bytes, int, bytes]:
    """A fresh data key (`dek`: 32 random bytes) wrapped under the active KEK, in the layout of
    shared.crypto.datakeys.wrap_data_key (nonce ‖ AES-256-GCM(dek), AAD = version and key id)."""
    key_id = "dk_" + id_random.hex()
    wrapped = nonce + wrap_aead.encrypt(nonce, dek, _wrap_aad(ctx.wrap_version, key_id))
    return key_id, dek, ctx.wrap_version, wrapped


def _aad(task_id: uuid.UUID, purpose: str) -> bytes:
    return b"quorum-task/1|" + purpose.encode() + b"|" + task_id.bytes


def _seal(aead: AESGCM, task_id: uuid.UUID, payload: bytes, purpose: bytes, nonce: bytes) -> bytes:
    return _seal_id(aead, task_id.bytes, payload, purpose, nonce)


def _seal_id(aead: AESGCM, task_id: bytes, payload: bytes, purpose: bytes, nonce: bytes) -> bytes:
    return TASK_FORMAT + nonce + aead.encrypt(nonce, payload, b"quorum-task/1|" + purpose + b"|" + task_id)


def encrypt_task_payload(dek: bytes, task_id: uuid.UUID, payload: bytes, *, purpose: str) -> bytes:
    return _seal(AESGCM(dek), task_id, payload, purpose.encode(), os.urandom(NONCE_BYTES))


def decrypt_task_payload(dek: bytes, task_id: uuid.UUID, blob: bytes, *, purpose: str) -> bytes:
    """Raises `cryptography.exceptions.InvalidTag` on any tampering or a row copied to another task."""
    if blob[:1] != TASK_FORMAT:
        raise ValueError("unknown task ciphertext format")
    return AESGCM(dek).decrypt(blob[1:1 + NONCE_BYTES], blob[1 + NONCE_BYTES:], _aad(task_id, purpose))


# -- parsing and validation ---------------------------------------------------------------------------

def _parse(number: int, raw: Any, errors: list[RowError]) -> Any:
    if isinstance(raw, bytes | bytearray | memoryview):
        if len(raw) > MAX_ROW_BYTES:
            errors.append(RowError(number, None, f"row is larger than {MAX_ROW_BYTES} bytes"))
            return None
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(RowError(number, None, f"not valid UTF-8 (byte 0x{raw[exc.start]:02X} at offset "
                                                  f"{exc.start}); declare the charset, e.g. "
                                                  f"'Content-Type: application/x-ndjson; charset=latin-1'"))
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            errors.append(RowError(number, None, f"malformed JSON: {exc}"))
            return None
    if isinstance(raw, str):
        try:
            return orjson.loads(raw.encode("utf-8"))
        except UnicodeEncodeError as exc:
            errors.append(RowError(number, None, f"not valid UTF-8 (byte 0x{ord(raw[exc.start]) - 0xDC00:02X} at "
                                                  f"character {exc.start} of the row); declare the file's charset, "
                                                  "e.g. 'Content-Type: application/json; charset=latin-1'"))
            return None
        except orjson.JSONDecodeError as exc:
            errors.append(RowError(number, None, f"malformed JSON: {exc}"))
            return None
    bad = _first_surrogate_path(raw, "")
    if bad is not None:
        errors.append(RowError(number, bad or None, "not valid UTF-8; declare the file's charset "
                                                   "(e.g. charset=latin-1)"))
        return None
    return raw


def _first_surrogate_path(value: Any, path: str) -> str | None:
    """Invalid UTF-8 decoded with surrogateescape leaves lone surrogates: find the first one."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _first_surrogate_path(k, path) if isinstance(k, str) else None
            if found is None:
                found = _first_surrogate_path(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_surrogate_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _split(number: int, obj: Any, errors: list[RowError]) -> tuple[dict | None, list]:
    if not isinstance(obj, dict):
        errors.append(RowError(number, None, f"a task must be a JSON object, got {type(obj).__name__}"))
        return None, []
    if "data" in obj and isinstance(obj["data"], dict):  # Label Studio task format
        unknown = () if obj.keys() <= LS_TOP_KEYS else set(obj) - LS_TOP_KEYS
        if "annotations" in unknown:
            errors.append(RowError(number, "annotations", "importing annotations is not supported; "
                                                          "send them as predictions (pre-labels)"))
            return None, []
        if unknown:
            errors.append(RowError(number, sorted(unknown)[0], "unknown top-level key in a Label Studio task "
                                                               f"(allowed: {', '.join(sorted(LS_TOP_KEYS))})"))
            return None, []
        predictions = obj.get("predictions") or []
        if not isinstance(predictions, list):
            errors.append(RowError(number, "predictions", "must be a list"))
            return None, []
        return obj["data"], predictions
    return obj, []


def _validate_data(number: int, data: dict, schema: dict, from_csv: bool, errors: list[RowError]) -> None:
    for f in schema["data"]:
        name, kind = f["name"], f["type"]
        value = data.get(name)
        if value is None or (isinstance(value, str) and (not value or value.isspace())):
            if f.get("required", True):
                errors.append(RowError(number, f"data.{name}", f"required {kind} field is missing or empty"))
            continue
        if kind == "text" and not isinstance(value, str):
            errors.append(RowError(number, f"data.{name}", f"must be a string, got {type(value).__name__}"))
        elif kind in MEDIA_TYPES and not isinstance(value, str):
            errors.append(RowError(number, f"data.{name}", f"must be a URL or media reference string"))
        elif kind == "number":
            if from_csv and isinstance(value, str):
                try:
                    data[name] = float(value) if any(c in value for c in ".eE") else int(value)
                except ValueError:
                    errors.append(RowError(number, f"data.{name}", f"must be a number, got {value[:40]!r}"))
            elif not isinstance(value, int | float) or isinstance(value, bool):
                errors.append(RowError(number, f"data.{name}", f"must be a number, got {type(value).__name__}"))


def _validate_predictions(number: int, predictions: list, controls: dict, data: dict,
                          errors: list[RowError]) -> None:
    for i, pred in enumerate(predictions):
        where = f"predictions[{i}]"
        if not isinstance(pred, dict):
            errors.append(RowError(number, where, "must be an object"))
            continue
        unknown = set(pred) - {"model_version", "score", "result", "id", "created_ago", "created_at",
                               "updated_at", "cluster", "neighbors", "mislabeling", "task", "project"}
        if unknown:
            errors.append(RowError(number, f"{where}.{sorted(unknown)[0]}", "unknown prediction field"))
        score = pred.get("score")
        if score is not None and (not isinstance(score, int | float) or isinstance(score, bool)):
            errors.append(RowError(number, f"{where}.score", "must be a number"))
        result = pred.get("result")
        if not isinstance(result, list):
            errors.append(RowError(number, f"{where}.result", "must be a list of regions"))
            continue
        for j, item in enumerate(result):
            _validate_region(number, f"{where}.result[{j}]", item, controls, data, errors)


def _validate_region(number: int, where: str, item: Any, controls: dict, data: dict,
                     errors: list[RowError]) -> None:
    def bad(suffix: str, message: str) -> None:
        errors.append(RowError(number, f"{where}{suffix}", message))

    if not isinstance(item, dict):
        return bad("", "must be an object")
    control = controls.get(item.get("from_name"))
    if control is None:
        return bad(".from_name", f"names no control of the label schema: {str(item.get('from_name'))[:60]!r}")
    if item.get("to_name") not in (None, control["source"]):
        return bad(".to_name", f"control {control['name']!r} annotates {control['source']!r}")
    kind = control["type"]
    if item.get("type") not in LS_TYPES[kind]:
        return bad(".type", f"control {control['name']!r} ({kind}) takes {' or '.join(sorted(LS_TYPES[kind]))}")
    value = item.get("value")
    if not isinstance(value, dict):
        return bad(".value", "must be an object")
    labels_key = item["type"] if item["type"].endswith("labels") else "labels"
    if kind in ("single_choice", "multi_choice"):
        choices = value.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            return bad(".value.choices", "must be a list of option strings")
        unknown = [c for c in choices if c not in control["options"]]
        if unknown:
            return bad(".value.choices", f"not an option of {control['name']!r}: {unknown[0][:60]!r}")
        if kind == "single_choice" and len(choices) != 1:
            return bad(".value.choices", "a single-choice control takes exactly one option")
    elif kind in ("spans", "time_segments", "bbox", "polygon"):
        labels = value.get(labels_key, value.get("labels"))
        if labels is not None:
            if not isinstance(labels, list) or any(lb not in control["labels"] for lb in labels):
                return bad(f".value.{labels_key}", f"labels must come from {control['name']!r}'s label set")
        if kind == "spans":
            start, end = value.get("start"), value.get("end")
            text = data.get(control["source"])
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end
                    and isinstance(text, str) and end <= len(text)):
                return bad(".value", "span needs integer start < end within the text")
        elif kind == "time_segments":
            start, end = value.get("start"), value.get("end")
            if not (_num(start) and _num(end) and 0 <= start < end):
                return bad(".value", "segment needs numeric start < end (seconds)")
        elif kind == "bbox":
            coords = [value.get(k) for k in ("x", "y", "width", "height")]
            if not all(_num(c) for c in coords) or not all(0 <= c <= 100 for c in coords):
                return bad(".value", "box needs x, y, width, height as percentages 0..100")
        else:
            points = value.get("points")
            if (not isinstance(points, list) or not control["min_points"] <= len(points) <= control["max_points"]
                    or not all(isinstance(p, list) and len(p) == 2 and all(_num(c) and 0 <= c <= 100 for c in p)
                               for p in points)):
                return bad(".value.points", f"polygon needs {control['min_points']}..{control['max_points']} "
                                            "[x, y] points as percentages")
    elif kind == "text":
        text = value.get("text")
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            return bad(".value.text", "must be a list of strings")
        if sum(len(t) for t in text) > control["max_length"]:
            return bad(".value.text", f"longer than {control['max_length']} characters")
    else:
        key = "number" if kind == "number" else "rating"
        n = value.get(key)
        if not _num(n) or not control["min"] <= n <= control["max"]:
            return bad(f".value.{key}", f"must be a number in {control['min']}..{control['max']}")
        steps = (n - control["min"]) / control["step"]
        if abs(steps - round(steps)) > 1e-9:
            return bad(f".value.{key}", f"must be a multiple of step {control['step']} from {control['min']}")
    return None


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- redaction --------------------------------------------------------------------------------------------

def _action_table(redactor: Any) -> dict[Any, tuple[bool, str, str, str]]:
    """Entity type -> (pseudonymise?, action name, type name, mask placeholder), per redactor policy."""
    from shared.pii import Action, EntityType

    table = {}
    for entity in EntityType:
        action = redactor.policy.action_for(entity)
        table[entity] = (action is Action.PSEUDONYMISE, action.value, entity.value, f"[{entity.value}]")
    return table


def _redact_text(redactor: Any, text: str, path: str, report: dict, pseudonyms: list[str],
                 actions: dict[Any, tuple[bool, str, str, str]] | None = None
                 ) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Redacted text plus the map of replaced spans: (orig_start, orig_end, new_start, new_end)."""
    spans = redactor.find(text)
    if not spans:
        return text, []
    if actions is None:
        actions = _action_table(redactor)
    from shared.pii import pseudonym

    parts: list[str] = []
    mapping: list[tuple[int, int, int, int]] = []
    pos = out = 0
    counts = report["counts"]
    entities = report["entities"]
    key = redactor._key
    hex_chars = redactor.policy.pseudonym_hex_chars
    for sp in spans:
        start, end, entity = sp.start, sp.end, sp.entity_type
        parts.append(text[pos:start])
        out += start - pos
        pseudonymise, action, type_name, placeholder = actions[entity]
        if pseudonymise:
            placeholder = pseudonym(entity, text[start:end], key, hex_chars)
            pseudonyms.append(placeholder)
        new_end = out + len(placeholder)
        parts.append(placeholder)
        mapping.append((start, end, out, new_end))
        entities.append({"path": path, "start": out, "end": new_end, "entity_type": type_name, "action": action})
        counts[type_name] = counts.get(type_name, 0) + 1
        out = new_end
        pos = end
    parts.append(text[pos:])
    return "".join(parts), mapping


def _redact_value(redactor: Any, value: Any, path: str, report: dict, pseudonyms: list[str],
                  offset_maps: dict[str, list], actions: dict | None = None) -> Any:
    if isinstance(value, str):
        text, mapping = _redact_text(redactor, value, path, report, pseudonyms, actions)
        offset_maps[path] = mapping
        return text
    if isinstance(value, dict):
        return {k: _redact_value(redactor, v, f"{path}.{k}", report, pseudonyms, offset_maps, actions)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(redactor, v, f"{path}[{i}]", report, pseudonyms, offset_maps, actions)
                for i, v in enumerate(value)]
    return value


def remap_offset(mapping: list[tuple[int, int, int, int]], offset: int, *, is_end: bool) -> int:
    """An offset in the original text → the redacted text. Inside a replaced span it snaps to the
    placeholder's edge (a start to the placeholder's start, an end to its end)."""
    shift = 0
    for o_start, o_end, n_start, n_end in mapping:
        if offset <= o_start:
            return offset + shift
        if offset < o_end or (is_end and offset == o_end):
            return n_end if is_end else n_start
        shift = n_end - o_end
    return offset + shift


def _redact_predictions(redactor: Any, predictions: list, controls: dict, offset_maps: dict, report: dict,
                        pseudonyms: list[str], actions: dict | None = None) -> list:
    out = []
    for i, pred in enumerate(predictions):
        pred = dict(pred)
        regions = []
        for j, item in enumerate(pred.get("result", [])):
            item = dict(item)
            value = dict(item["value"])
            control = controls[item["from_name"]]
            if control["type"] == "spans":
                mapping = offset_maps.get(control["source"], [])
                start = remap_offset(mapping, value["start"], is_end=False)
                end = remap_offset(mapping, value["end"], is_end=True)
                value["start"], value["end"] = start, max(end, start + 1)
                value.pop("text", None)  # the original substring may be PII; re-derive from the redacted text
            elif control["type"] == "text":  # free text (transcriptions) is the only prediction text
                path = f"predictions[{i}].result[{j}].value.text"
                value["text"] = _redact_value(redactor, value["text"], path, report, pseudonyms, {}, actions)
            item["value"] = value
            regions.append(item)
        pred["result"] = regions
        out.append(pred)
    return out
