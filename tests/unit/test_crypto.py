"""Envelope encryption, data keys, key ring and sealed secrets — no storage backend involved."""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
import stat
import struct
from pathlib import Path

import pytest

from shared.crypto import (
    DEFAULT_SEGMENT_SIZE,
    DataKeyNotFound,
    DecryptionError,
    EnvelopeHeader,
    InMemoryDataKeyStore,
    KeyDestroyed,
    KeyRing,
    KeyRingError,
    KeyVersionUnavailable,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    plaintext_size,
    unwrap_data_key,
    wrap_data_key,
)
from shared.crypto.envelope import SegmentCipher, decrypt_span, segment_span
from shared.storage import iter_bytes, read_all

S = DEFAULT_SEGMENT_SIZE
SEG_CT = S + 16
SIZES = [0, 1, 15, 16, 17, S - 1, S, S + 1, 2 * S, 3 * S + 12345]


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def keys(keyring: KeyRing) -> InMemoryDataKeyStore:
    return InMemoryDataKeyStore(keyring)


async def encrypt(keys: InMemoryDataKeyStore, data: bytes, chunk: int = 10_007, scope: str = "task:1") -> bytes:
    key_id, dek = await keys.create(scope)
    return await read_all(encrypt_stream(iter_bytes(data, chunk), key_id=key_id, data_key=dek))


async def decrypt(keys: InMemoryDataKeyStore, blob: bytes, chunk: int = 9_001) -> bytes:
    return await read_all(decrypt_stream(iter_bytes(blob, chunk), keys.get))


def header_len(blob: bytes) -> int:
    return EnvelopeHeader.parse(blob).length


# -- round trips and sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
async def test_stream_round_trip_and_size_arithmetic(keys: InMemoryDataKeyStore, size: int) -> None:
    data = os.urandom(size)
    blob = await encrypt(keys, data)
    header = EnvelopeHeader.parse(blob)
    assert len(blob) == ciphertext_size(size, header)
    assert plaintext_size(len(blob), header) == size
    assert await decrypt(keys, blob) == data
    assert await decrypt(keys, blob, chunk=1) == data  # byte-at-a-time input
    assert await decrypt(keys, blob, chunk=len(blob) + 1) == data  # the whole object in one chunk
    assert decrypt_bytes(blob, await keys.get(header.key_id)) == data
    if size >= 16:  # shorter random strings can occur in any random-looking bytes by chance
        assert data[:16] not in blob


@pytest.mark.parametrize("size", SIZES)
async def test_sync_and_stream_formats_agree(keys: InMemoryDataKeyStore, size: int) -> None:
    data = os.urandom(size)
    key_id, dek = await keys.create("x")
    blob = encrypt_bytes(data, key_id=key_id, data_key=dek)
    assert await decrypt(keys, blob) == data


async def _irregular(data: bytes, sizes: list[int]):
    at, i = 0, 0
    while at < len(data):
        size = sizes[i % len(sizes)]
        i += 1
        yield data[at:at + size]  # an empty chunk now and then, too
        at += size


@pytest.mark.parametrize("sizes", [[1], [S - 1], [S], [S + 1], [3 * S + 5], [10 * S], [0, S // 2, 0, 2 * S + 1, 7],
                                   [S - 16, 16, S + 16, 1]])
async def test_streams_of_any_chunking_round_trip(keys: InMemoryDataKeyStore, sizes: list[int]) -> None:
    """Segments are taken from views of the chunks and only those spanning two chunks are copied: every way
    the chunks can fall against the segments (inside one, on its edge, across several) encrypts to an object
    that decrypts, whole or by any chunking of the ciphertext, to the same bytes."""
    for size in (S - 1, S, S + 1, 4 * S, 4 * S + 3):
        data = os.urandom(size)
        key_id, dek = await keys.create("x")
        blob = await read_all(encrypt_stream(_irregular(data, sizes), key_id=key_id, data_key=dek))
        assert len(blob) == ciphertext_size(size, EnvelopeHeader.parse(blob))
        assert decrypt_bytes(blob, dek) == data
        assert await read_all(decrypt_stream(_irregular(blob, sizes), keys.get)) == data


async def test_same_plaintext_encrypts_differently(keys: InMemoryDataKeyStore) -> None:
    data = b"identical" * 1000
    assert await encrypt(keys, data) != await encrypt(keys, data)


async def test_small_segment_size_many_segments(keys: InMemoryDataKeyStore) -> None:
    data = os.urandom(100_000)
    key_id, dek = await keys.create("x")
    blob = await read_all(encrypt_stream(iter_bytes(data, 3000), key_id=key_id, data_key=dek, segment_size=1024))
    assert EnvelopeHeader.parse(blob).segment_size == 1024
    assert await decrypt(keys, blob) == data


def test_segment_size_allowlist() -> None:
    with pytest.raises(ValueError):
        EnvelopeHeader("dk_x", segment_size=100)
    with pytest.raises(ValueError):
        EnvelopeHeader("dk_x", segment_size=64 * 1024 * 1024)


# -- random access -----------------------------------------------------------------------------------

async def read_range(blob: bytes, dek: bytes, start: int, end: int) -> tuple[bytes, int]:
    """Decrypt [start, end) from only the covering ciphertext bytes; returns (plaintext, bytes fetched)."""
    header = EnvelopeHeader.parse(blob)
    total = plaintext_size(len(blob), header)
    span = segment_span(header, total, start, end)
    window = blob[span.ciphertext_start:span.ciphertext_end]
    out = await read_all(decrypt_span(iter_bytes(window, 7_000), SegmentCipher(header, dek), span))
    return out, len(window)


async def test_random_ranges_equal_plaintext_slices(keys: InMemoryDataKeyStore) -> None:
    data = os.urandom(7 * S + 4321)
    key_id, dek = await keys.create("x")
    blob = encrypt_bytes(data, key_id=key_id, data_key=dek)
    rng = random.Random(11)
    ranges = [(0, 1), (0, len(data)), (S - 1, S + 1), (S, 2 * S), (7 * S, len(data)), (len(data) - 1, len(data))]
    ranges += [(a, rng.randrange(a + 1, len(data) + 1)) for a in (rng.randrange(len(data)) for _ in range(60))]
    for start, end in ranges:
        got, fetched = await read_range(blob, dek, start, end)
        assert got == data[start:end], (start, end)
        covering = (end - 1) // S - start // S + 1
        assert fetched <= covering * SEG_CT, "must fetch only the covering segments"


# -- tampering, truncation, reordering ---------------------------------------------------------------

async def test_tampered_header_fails(keys: InMemoryDataKeyStore) -> None:
    blob = bytearray(await encrypt(keys, os.urandom(2 * S + 5)))
    hl = header_len(blob)
    for position in range(hl):
        if position == hl - 1 or 4 <= position < 9:
            continue  # key-id length / format / segment-size bytes: covered below as malformed headers
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            await decrypt(keys, bytes(tampered))
    changed_size = bytearray(blob)
    struct.pack_into(">I", changed_size, 5, 32 * 1024)
    with pytest.raises(DecryptionError):
        await decrypt(keys, bytes(changed_size))
    changed_version = bytearray(blob)
    changed_version[4] = 2
    with pytest.raises(DecryptionError, match="format version"):
        await decrypt(keys, bytes(changed_version))


async def test_header_with_other_key_id_fails(keys: InMemoryDataKeyStore) -> None:
    blob = await encrypt(keys, os.urandom(S + 10))
    other_id, _ = await keys.create("other")
    header = EnvelopeHeader.parse(blob)
    forged = EnvelopeHeader(other_id, header.segment_size, header.nonce_prefix).encode() + blob[header.length:]
    with pytest.raises(DecryptionError):
        await decrypt(keys, forged)


@pytest.mark.parametrize("where", ["first-segment", "last-segment", "first-tag", "last-tag"])
async def test_flipped_byte_in_segment_or_tag_fails(keys: InMemoryDataKeyStore, where: str) -> None:
    blob = bytearray(await encrypt(keys, os.urandom(3 * S + 100)))
    hl = header_len(blob)
    position = {"first-segment": hl + 10, "last-segment": len(blob) - 30, "first-tag": hl + SEG_CT - 1,
                "last-tag": len(blob) - 1}[where]
    blob[position] ^= 0x80
    with pytest.raises(DecryptionError):
        await decrypt(keys, bytes(blob))


@pytest.mark.parametrize("size", [0, S, 3 * S + 100])
async def test_truncation_fails(keys: InMemoryDataKeyStore, size: int) -> None:
    blob = await encrypt(keys, os.urandom(size))
    dek = await keys.get(EnvelopeHeader.parse(blob).key_id)
    hl = header_len(blob)
    cuts = {len(blob) - 1, len(blob) - 16, hl + 5, hl, hl - 1, 3}
    if size > S:
        cuts |= {hl + SEG_CT, hl + 2 * SEG_CT, hl + SEG_CT + 17}  # drop whole final segments / cut inside
    for cut in sorted(cuts):
        with pytest.raises(DecryptionError):
            await decrypt(keys, blob[:cut])
        if cut < hl:
            continue
        try:
            apparent = plaintext_size(cut, EnvelopeHeader.parse(blob))
        except DecryptionError:
            continue  # the size alone already gives the truncation away
        if apparent:
            # A size that looks valid still cannot pass: the apparent last segment is not marked final.
            with pytest.raises(DecryptionError):
                await read_range(blob[:cut], dek, apparent - 1, apparent)


async def test_appended_bytes_fail(keys: InMemoryDataKeyStore) -> None:
    blob = await encrypt(keys, os.urandom(2 * S))
    with pytest.raises(DecryptionError):
        await decrypt(keys, blob + b"\x00" * 20)


async def test_reordered_segments_fail(keys: InMemoryDataKeyStore) -> None:
    blob = await encrypt(keys, os.urandom(4 * S))  # four full segments, the last one final
    hl = header_len(blob)
    segments = [blob[hl + i * SEG_CT: hl + (i + 1) * SEG_CT] for i in range(4)]
    swapped = blob[:hl] + segments[1] + segments[0] + segments[2] + segments[3]
    with pytest.raises(DecryptionError):
        await decrypt(keys, swapped)
    final_moved = blob[:hl] + segments[0] + segments[1] + segments[3] + segments[2]
    with pytest.raises(DecryptionError):
        await decrypt(keys, final_moved)


async def test_segment_from_another_object_fails(keyring: KeyRing) -> None:
    # Same data key for both objects (worst case): the header hash and nonce prefix still differ.
    keys = InMemoryDataKeyStore(keyring)
    key_id, dek = await keys.create("x")
    a = encrypt_bytes(os.urandom(3 * S), key_id=key_id, data_key=dek)
    b = encrypt_bytes(os.urandom(3 * S), key_id=key_id, data_key=dek)
    hl = header_len(a)
    spliced = a[:hl + SEG_CT] + b[hl + SEG_CT: hl + 2 * SEG_CT] + a[hl + 2 * SEG_CT:]
    with pytest.raises(DecryptionError):
        decrypt_bytes(spliced, dek)


async def test_not_an_envelope(keys: InMemoryDataKeyStore) -> None:
    with pytest.raises(DecryptionError, match="magic"):
        await decrypt(keys, b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(DecryptionError):
        await decrypt(keys, b"")


async def test_wrong_data_key_fails(keys: InMemoryDataKeyStore) -> None:
    blob = await encrypt(keys, os.urandom(1000))
    with pytest.raises(DecryptionError):
        decrypt_bytes(blob, os.urandom(32))


# -- data keys: shredding and rotation ---------------------------------------------------------------

async def test_destroyed_key_raises_key_destroyed(keys: InMemoryDataKeyStore) -> None:
    blob = await encrypt(keys, b"erase me", scope="subject:ab12")
    key_id = EnvelopeHeader.parse(blob).key_id
    await keys.destroy(key_id)
    await keys.destroy(key_id)  # idempotent
    with pytest.raises(KeyDestroyed):
        await decrypt(keys, blob)
    assert all(r.wrapped is None for r in keys.records() if r.key_id == key_id)
    with pytest.raises(DataKeyNotFound):
        await keys.get("dk_never_created")


async def test_destroy_scope_shreds_only_that_scope(keys: InMemoryDataKeyStore) -> None:
    doomed = [await encrypt(keys, b"task data %d" % i, scope="task:9") for i in range(3)]
    kept = await encrypt(keys, b"other task", scope="task:10")
    assert await keys.destroy_scope("task:9") == 3
    assert await keys.destroy_scope("task:9") == 0
    for blob in doomed:
        with pytest.raises(KeyDestroyed):
            await decrypt(keys, blob)
    assert await decrypt(keys, kept) == b"other task"


async def test_rotation_rewraps_keeps_data_readable_and_old_kek_retireable(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "keyring.json")
    keys = InMemoryDataKeyStore(ring)
    blobs = {os.urandom(n): None for n in (0, 10, S + 1)}
    for data in blobs:
        blobs[data] = await encrypt(keys, data)
    before = {r.key_id: r.wrapped for r in keys.records()}
    assert {r.kek_version for r in keys.records()} == {1}

    assert ring.rotate() == 2
    assert ring.active_version == 2
    assert await keys.rewrap() == 3
    assert await keys.rewrap() == 0
    assert {r.kek_version for r in keys.records()} == {2}
    ciphertexts_untouched = dict(blobs)

    ring.retire(1)
    assert ring.versions == (2,)
    for data, blob in blobs.items():
        assert blob == ciphertexts_untouched[data]  # rotation never re-encrypts data
        assert await decrypt(keys, blob) == data
    assert all(before[r.key_id] != r.wrapped for r in keys.records())
    # A fresh process loading the file sees the same state, and version numbers are never reused.
    reloaded = KeyRing.load_or_create(tmp_path / "keyring.json")
    assert reloaded.versions == (2,)
    assert reloaded.rotate() == 3


async def test_retiring_without_rewrap_makes_old_keys_unreadable(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "keyring.json")
    keys = InMemoryDataKeyStore(ring)
    blob = await encrypt(keys, b"wrapped under v1")
    ring.rotate()
    ring.retire(1)
    with pytest.raises(KeyVersionUnavailable):
        await decrypt(keys, blob)


def test_wrapped_key_is_bound_to_its_id(keyring: KeyRing) -> None:
    dek = os.urandom(32)
    wrapped = wrap_data_key(keyring, dek, "dk_a")
    assert unwrap_data_key(keyring, wrapped, "dk_a") == dek
    with pytest.raises(DecryptionError):
        unwrap_data_key(keyring, wrapped, "dk_b")
    assert dek not in wrapped.wrapped
    assert "wrapped=<" in repr(wrapped)


# -- key ring ----------------------------------------------------------------------------------------

def test_keyring_file_created_0600_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "keyring.json"
    ring = KeyRing.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ring.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    material = [base64.b64decode(e["key"]) for e in json.loads(path.read_text())["keys"].values()]
    shown = repr(ring) + str(ring)
    for key in material:
        assert base64.b64encode(key).decode() not in shown and key.hex() not in shown
    assert "versions=[1, 2]" in repr(ring)
    with pytest.raises(TypeError):
        pickle.dumps(ring)
    assert KeyRing.load_or_create(path).versions == (1, 2)  # existing file is loaded, not replaced


def test_keyring_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    KeyRing.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        KeyRing.load_or_create(path)


def test_keyring_from_secret(tmp_path: Path) -> None:
    k1, k2 = os.urandom(32), os.urandom(32)
    secret = f"1:{base64.b64encode(k1).decode()}, 2:{base64.urlsafe_b64encode(k2).decode().rstrip('=')}"
    ring = KeyRing.from_secret(secret)
    assert ring.versions == (1, 2) and ring.active_version == 2
    assert base64.b64encode(k1).decode() not in repr(ring)
    with pytest.raises(KeyRingError):
        ring.rotate()
    for bad in ["", "1:short", "x:" + base64.b64encode(k1).decode(), "1:" + base64.b64encode(k1).decode() + ",1:"
                + base64.b64encode(k2).decode(), "1:not base64!!"]:
        with pytest.raises(KeyRingError) as err:
            KeyRing.from_secret(bad)
        assert base64.b64encode(k1).decode() not in str(err.value)
    assert KeyRing.from_secret(KeyRing.generate_secret(3)).versions == (1, 2, 3)


def test_cannot_retire_active_version(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "k.json")
    with pytest.raises(KeyRingError, match="active"):
        ring.retire(1)


def test_other_process_rotation_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    service = KeyRing.load_or_create(path)
    cli = KeyRing.load_or_create(path)
    cli.rotate()
    token = cli.seal(b"new secret", "ctx")
    assert service.unseal(token, "ctx") == b"new secret"  # unknown version → reload from file


# -- sealed secrets ----------------------------------------------------------------------------------

def test_sealed_secret_round_trip_across_rotation(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "keyring.json")
    totp_seed = b"JBSWY3DPEHPK3PXP"
    token = ring.seal(totp_seed, "user:42:totp")
    assert token.startswith("qs1.1.") and totp_seed.decode() not in token
    assert ring.unseal(token, "user:42:totp") == totp_seed
    with pytest.raises(DecryptionError):
        ring.unseal(token, "user:43:totp")  # copied onto another row

    ring.rotate()
    assert ring.unseal(token, "user:42:totp") == totp_seed  # old version still opens
    moved = ring.reseal(token, "user:42:totp")
    assert moved.startswith("qs1.2.")
    assert ring.reseal(moved, "user:42:totp") == moved
    ring.retire(1)
    assert ring.unseal(moved, "user:42:totp") == totp_seed
    with pytest.raises(KeyVersionUnavailable):
        ring.unseal(token, "user:42:totp")


def test_tampered_sealed_secret_fails(keyring: KeyRing) -> None:
    token = keyring.seal("whsec_abc", "webhook:7")
    body = token.rsplit(".", 1)[1]
    flipped = token[: -len(body)] + ("A" if body[0] != "A" else "B") + body[1:]
    relabelled = token.replace("qs1.1.", "qs1.2.")
    for bad in [flipped, relabelled, token[:-4], "qs1.1.", "nonsense", "qs2.1." + body]:
        with pytest.raises(DecryptionError):
            keyring.unseal(bad, "webhook:7")


def test_keyring_from_settings_prefers_secret_then_key_file(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from shared.config import Settings
    from shared.crypto import keyring_from_settings

    from_secret = keyring_from_settings(Settings(keyring=SecretStr(KeyRing.generate_secret(2)), data_dir=tmp_path))
    assert from_secret.versions == (1, 2) and from_secret.path is None
    assert not (tmp_path / "keyring.json").exists()
    from_file = keyring_from_settings(Settings(data_dir=tmp_path))
    assert from_file.path == tmp_path / "keyring.json"
    assert stat.S_IMODE((tmp_path / "keyring.json").stat().st_mode) == 0o600
