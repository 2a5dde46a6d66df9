"""One blob-store suite, run against the local directory, S3 over real HTTP (moto, or
QUORUM_TEST_S3_ENDPOINT), and the encrypting wrapper over each of them."""

from __future__ import annotations

import os
import random
import shutil
import threading
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from secrets import token_hex

import pytest

from shared.crypto import DecryptionError, EncryptedBlobStore, InMemoryDataKeyStore, KeyDestroyed, KeyRing
from shared.storage import (
    InvalidObjectKey,
    LocalBlobStore,
    ObjectNotFound,
    S3BlobStore,
    StorageUnavailable,
    create_blob_store,
    iter_bytes,
    read_all,
)
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, free_port, start_s3_server

MiB = 1024 * 1024
SEGMENT = 64 * 1024
BACKENDS = ["local", "s3", "encrypted-local", "encrypted-s3"]
TRAVERSAL_KEYS = ["", "/etc/passwd", "../escape", "a/../../b", "a/./b", "a//b", "a/", ".", "..",
                  "a\\..\\b", "win\\path", "nul\x00byte", "line\nbreak", "x" * 1100]


@pytest.fixture(scope="module")
def s3_endpoint():
    configured = os.environ.get("QUORUM_TEST_S3_ENDPOINT")
    if configured:
        yield configured
        return
    endpoint, stop = start_s3_server()
    yield endpoint
    stop()


def make_s3(endpoint: str, bucket: str | None = None) -> S3BlobStore:
    return S3BlobStore(endpoint, bucket=bucket or f"quorum-test-{token_hex(6)}", access_key=S3_ACCESS_KEY,
                       secret_key=S3_SECRET_KEY, secure=False, part_size=5 * MiB)


class Backend:
    def __init__(self, name: str, store, raw) -> None:
        self.name, self.store, self.raw = name, store, raw  # raw: the store holding what is at rest

    @property
    def encrypted(self) -> bool:
        return self.name.startswith("encrypted")


@pytest.fixture(params=BACKENDS)
async def backend(request, tmp_path: Path, s3_endpoint: str) -> AsyncIterator[Backend]:
    raw = LocalBlobStore(tmp_path / "blobs") if request.param.endswith("local") else make_s3(s3_endpoint)
    store = raw
    if request.param.startswith("encrypted"):
        store = EncryptedBlobStore(raw, InMemoryDataKeyStore(KeyRing.generate()), segment_size=SEGMENT)
    yield Backend(request.param, store, raw)
    await store.aclose()


async def generated(total: int, seed: int, chunk: int = 300_007) -> AsyncIterator[bytes]:
    """Deterministic pseudo-random bytes produced on the fly (the source is never whole in memory)."""
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield rng.randbytes(n)
        sent += n


async def test_streamed_multi_megabyte_round_trip(backend: Backend) -> None:
    total = 11 * MiB + 12_345  # > two S3 parts of 5 MiB: a real multipart upload
    expected = await read_all(generated(total, seed=1))
    written = await backend.store.put("media/p1/video.bin", generated(total, seed=1), content_type="video/mp4")
    assert written == total
    assert await backend.store.size("media/p1/video.bin") == total
    assert await backend.store.exists("media/p1/video.bin")
    chunks = [c async for c in backend.store.open_range("media/p1/video.bin")]
    assert len(chunks) > 1, "a multi-MB read must stream in pieces"
    assert b"".join(chunks) == expected


@pytest.mark.parametrize("backend", ["local", "encrypted-local"], indirect=True)
async def test_put_holds_at_most_a_bounded_window_in_memory(backend: Backend) -> None:
    total = 40 * MiB
    tracemalloc.start()
    try:
        await backend.store.put("big/stream.bin", generated(total, seed=2, chunk=256 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert await backend.store.size("big/stream.bin") == total
    assert peak < 8 * MiB, f"put of {total} bytes peaked at {peak} bytes traced"


@pytest.mark.parametrize("backend", ["s3", "encrypted-s3"], indirect=True)
async def test_s3_put_reads_ahead_of_its_uploaded_parts_by_a_bounded_window(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts upload while the next one fills (the source is not kept waiting), but the source is never read
    more than `parts_in_flight` parts and the filling one ahead of what S3 has acknowledged. (moto runs in
    this process, so tracemalloc would count the stored object too: the window is measured in bytes.)"""
    raw: S3BlobStore = backend.raw
    upload_part = raw._client._upload_part
    pulled = acknowledged = widest = 0
    read_on = threading.Event()  # set once the source is read past the first part
    overlapped: list[bool] = []

    def counting_upload_part(bucket, key, data, headers, upload_id, part_number):
        nonlocal acknowledged
        if part_number == 1:  # hold the first part until the source moves on (a serial put never would)
            overlapped.append(read_on.wait(timeout=10))
        result = upload_part(bucket, key, data, headers, upload_id, part_number)
        acknowledged += len(data)
        return result

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled, widest
        async for chunk in generated(40 * MiB, seed=2, chunk=256 * 1024):
            pulled += len(chunk)
            widest = max(widest, pulled - acknowledged)
            if pulled > raw._part_size + 2 * 256 * 1024:
                read_on.set()
            yield chunk

    monkeypatch.setattr(raw._client, "_upload_part", counting_upload_part)
    await backend.store.put("big/stream.bin", source())
    assert await backend.store.size("big/stream.bin") == 40 * MiB
    assert acknowledged >= 40 * MiB
    bound = (raw._parts_in_flight + 1) * raw._part_size + 2 * 256 * 1024 + 2 * SEGMENT
    assert widest <= bound, f"read {widest} bytes ahead of S3 (bound {bound})"
    assert overlapped == [True], "the source was not read on while the first part uploaded"


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_s3_parts_grow_with_the_object_past_the_part_count_threshold(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 takes at most 10,000 parts: after PARTS_AT_PART_SIZE parts, each part is at least 1/PARTS_AT_PART_SIZE
    of what has been sent (here after 2 parts, so the growth shows on a 40 MiB object)."""
    import shared.storage.s3 as s3_module

    monkeypatch.setattr(s3_module, "PARTS_AT_PART_SIZE", 2)
    raw: S3BlobStore = backend.raw
    sizes: list[int] = []
    upload_part = raw._client._upload_part

    def recording_upload_part(bucket, key, data, *args):
        sizes.append(len(data))
        return upload_part(bucket, key, data, *args)

    monkeypatch.setattr(raw._client, "_upload_part", recording_upload_part)
    total = 40 * MiB
    await raw.put("big/growing.bin", generated(total, seed=6))
    assert await read_all(raw.open_range("big/growing.bin")) == await read_all(generated(total, seed=6))
    assert sum(sizes) == total
    sent = 0
    for size in sizes[:-1]:
        assert size >= max(raw._part_size, sent // 2), sizes
        sent += size
    assert len(sizes) < total // raw._part_size, sizes  # fewer, larger parts than at a fixed 5 MiB


async def test_a_producer_reusing_its_buffer_stores_what_it_yielded(backend: Backend) -> None:
    """Stores write chunks in batches, after the producer has moved on: a chunk that is a buffer the producer
    fills again for the next one must be stored as it was when yielded."""
    rng = random.Random(3)
    yielded: list[bytes] = []

    async def reused() -> AsyncIterator[bytearray]:
        buf = bytearray(70_000)
        for _ in range(40):  # 2.8 MB: several write batches
            buf[:] = rng.randbytes(len(buf))
            yielded.append(bytes(buf))
            yield buf

    await backend.store.put("reuse/stream.bin", reused())
    assert await read_all(backend.store.open_range("reuse/stream.bin")) == b"".join(yielded)


async def test_ranges_equal_plaintext_slices(backend: Backend) -> None:
    data = random.Random(3).randbytes(5 * SEGMENT + 777)
    await backend.store.put("r/obj", iter_bytes(data, 40_000))
    n = len(data)
    edges = [(0, 1), (0, None), (n - 1, None), (n - 1, n), (0, n + 100), (n, None), (n + 5, n + 10), (10, 10),
             (SEGMENT - 1, SEGMENT + 1), (SEGMENT, 2 * SEGMENT), (2 * SEGMENT - 3, 4 * SEGMENT + 3),
             (5 * SEGMENT, None), (5 * SEGMENT + 776, None)]
    rng = random.Random(4)
    for _ in range(25):
        a = rng.randrange(n)
        edges.append((a, rng.randrange(a, n + 1)))
    for start, end in edges:
        got = await read_all(backend.store.open_range("r/obj", start, end))
        assert got == data[start:end], f"range [{start}, {end})"
    with pytest.raises(ValueError):
        await read_all(backend.store.open_range("r/obj", -1, 5))


async def test_empty_object(backend: Backend) -> None:
    assert await backend.store.put("empty", iter_bytes(b"")) == 0
    assert await backend.store.size("empty") == 0
    assert await read_all(backend.store.open_range("empty")) == b""
    assert await read_all(backend.store.open_range("empty", 0, 10)) == b""


async def test_overwrite_delete_and_missing(backend: Backend) -> None:
    store = backend.store
    await store.put("doc/a.txt", iter_bytes(b"first version"))
    await store.put("doc/a.txt", iter_bytes(b"second"))
    assert await read_all(store.open_range("doc/a.txt")) == b"second"
    assert await store.size("doc/a.txt") == 6
    await store.delete("doc/a.txt")
    await store.delete("doc/a.txt")  # idempotent
    assert not await store.exists("doc/a.txt")
    with pytest.raises(ObjectNotFound):
        await store.size("doc/a.txt")
    with pytest.raises(ObjectNotFound):
        await read_all(store.open_range("doc/a.txt"))
    with pytest.raises(ObjectNotFound):
        await read_all(store.open_range("doc/a.txt", 2, 4))


async def test_failed_put_keeps_previous_object_and_leaves_no_partial(backend: Backend) -> None:
    await backend.store.put("doc/stable", iter_bytes(b"version one"))

    async def breaks_midway():
        async for chunk in generated(6 * MiB, seed=5):  # past the first 5 MiB S3 part
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await backend.store.put("doc/stable", breaks_midway())
    with pytest.raises(ConnectionResetError):
        await backend.store.put("doc/new", breaks_midway())
    assert await read_all(backend.store.open_range("doc/stable")) == b"version one"
    assert not await backend.store.exists("doc/new")
    assert [k async for k in backend.store.list("")] == ["doc/stable"]
    if backend.encrypted:
        live = [r for r in backend.store.keys.records() if r.destroyed_at is None]
        assert len(live) == 1, "keys of failed puts are destroyed"
    if isinstance(backend.raw, S3BlobStore):  # the parts already uploaded are not left behind
        pending = backend.raw._client._list_multipart_uploads(backend.raw.bucket)
        assert pending.uploads == []


async def test_list_by_prefix(backend: Backend) -> None:
    keys = ["p/1/a.png", "p/1/b.png", "p/10/c.png", "p/2/d.png", "q/e.png"]
    for key in keys:
        await backend.store.put(key, iter_bytes(key.encode()))
    assert [k async for k in backend.store.list("")] == sorted(keys)
    assert [k async for k in backend.store.list("p/1/")] == ["p/1/a.png", "p/1/b.png"]
    assert [k async for k in backend.store.list("p/1")] == ["p/1/a.png", "p/1/b.png", "p/10/c.png"]
    assert [k async for k in backend.store.list("nothing/")] == []
    with pytest.raises(InvalidObjectKey):
        [k async for k in backend.store.list("../")]


@pytest.mark.parametrize("bad_key", TRAVERSAL_KEYS, ids=repr)
async def test_traversal_and_malformed_keys_rejected(backend: Backend, bad_key: str) -> None:
    store = backend.store
    with pytest.raises(InvalidObjectKey):
        await store.put(bad_key, iter_bytes(b"x"))
    with pytest.raises(InvalidObjectKey):
        await read_all(store.open_range(bad_key))
    with pytest.raises(InvalidObjectKey):
        await store.size(bad_key)
    with pytest.raises(InvalidObjectKey):
        await store.exists(bad_key)
    with pytest.raises(InvalidObjectKey):
        await store.delete(bad_key)
    assert [k async for k in store.list("")] == []


async def test_ping_ready_then_dead_endpoint(backend: Backend, tmp_path: Path) -> None:
    await backend.store.ping()
    if backend.name.endswith("s3"):
        dead = make_s3(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    else:
        dead = LocalBlobStore(tmp_path / "gone")
        shutil.rmtree(tmp_path / "gone")
    if backend.encrypted:
        dead = EncryptedBlobStore(dead, InMemoryDataKeyStore(KeyRing.generate()))
    with pytest.raises(StorageUnavailable):
        await dead.ping()
    await dead.aclose()


async def test_factory_builds_the_configured_backend(tmp_path: Path, s3_endpoint: str) -> None:
    from shared.config import Settings

    local = create_blob_store(Settings(blob_dir=tmp_path / "configured"))
    assert isinstance(local, LocalBlobStore) and local.root == (tmp_path / "configured").resolve()
    s3 = create_blob_store(Settings(s3_endpoint=s3_endpoint, s3_access_key=S3_ACCESS_KEY,
                                    s3_secret_key=S3_SECRET_KEY, s3_bucket=f"quorum-cfg-{token_hex(4)}",
                                    s3_part_mib=6, s3_parts_in_flight=3))
    assert isinstance(s3, S3BlobStore) and S3_SECRET_KEY not in repr(s3)
    assert (s3._part_size, s3._parts_in_flight) == (6 * MiB, 3)
    with pytest.raises(ValueError, match="s3_part_mib"):  # under S3's 5 MiB floor: refused at startup
        Settings(s3_part_mib=4)
    for store in (local, s3):
        await store.ping()
        await store.put("x/y", iter_bytes(b"configured"))
        assert await read_all(store.open_range("x/y")) == b"configured"
        await store.aclose()


# -- at rest: only ciphertext ------------------------------------------------------------------------

SECRET_TEXT = b"Patient Jane Q. Doe, SSN 123-45-6789, jane.doe@example.com, card 4111 1111 1111 1111. "


@pytest.mark.parametrize("backend", ["encrypted-local", "encrypted-s3"], indirect=True)
async def test_stored_bytes_contain_no_plaintext(backend: Backend) -> None:
    plaintext = SECRET_TEXT * 20_000  # ~1.7 MB of highly repetitive, recognisable text
    await backend.store.put("ingest/raw.txt", iter_bytes(plaintext, 100_000))
    stored = await read_all(backend.raw.open_range("ingest/raw.txt"))
    assert len(stored) > len(plaintext)
    for piece in (b"Jane Q. Doe", b"123-45-6789", b"jane.doe@example.com", b"4111 1111", SECRET_TEXT[:8],
                  SECRET_TEXT[40:48]):
        assert piece not in stored
    assert await read_all(backend.store.open_range("ingest/raw.txt")) == plaintext


@pytest.mark.parametrize("backend", ["encrypted-local", "encrypted-s3"], indirect=True)
async def test_tampered_object_fails_loudly(backend: Backend) -> None:
    data = os.urandom(3 * SEGMENT)
    await backend.store.put("t/obj", iter_bytes(data))
    original = await read_all(backend.raw.open_range("t/obj"))
    stored = bytearray(original)
    stored[len(stored) // 2] ^= 0x01
    await backend.raw.put("t/obj", iter_bytes(bytes(stored)))
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj"))
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj", SEGMENT, 2 * SEGMENT))
    truncated = original[:-(SEGMENT + 16)]  # drop the final segment: a size that still looks valid
    await backend.raw.put("t/obj", iter_bytes(truncated))
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj"))
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj", 2 * SEGMENT - 10, None))
    await backend.raw.put("t/obj", iter_bytes(original[:-100]))  # cut mid-segment
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj"))
    with pytest.raises(DecryptionError):
        await read_all(backend.store.open_range("t/obj", 3 * SEGMENT - 200, 3 * SEGMENT - 150))
    await backend.raw.put("t/obj", iter_bytes(original[:-(SEGMENT + 10)]))  # 6 bytes left of the last one
    with pytest.raises(DecryptionError, match="impossible size"):
        await backend.store.size("t/obj")


@pytest.mark.parametrize("backend", ["encrypted-local", "encrypted-s3"], indirect=True)
async def test_delete_shreds_key_so_copies_are_unreadable(backend: Backend) -> None:
    await backend.store.put("task/7/img.png", iter_bytes(SECRET_TEXT * 100), scope="task:7")
    backup = await read_all(backend.raw.open_range("task/7/img.png"))
    await backend.raw.put("backup/img.png", iter_bytes(backup))  # e.g. a bucket replica or backup
    assert await read_all(backend.store.open_range("backup/img.png")) == SECRET_TEXT * 100
    await backend.store.delete("task/7/img.png")
    with pytest.raises(KeyDestroyed):
        await read_all(backend.store.open_range("backup/img.png"))
    with pytest.raises(KeyDestroyed):
        await read_all(backend.store.open_range("backup/img.png", 10, 20))


@pytest.mark.parametrize("backend", ["encrypted-local", "encrypted-s3"], indirect=True)
async def test_range_fetches_only_covering_segments(backend: Backend) -> None:
    data = os.urandom(40 * SEGMENT)
    await backend.store.put("big/file", iter_bytes(data))
    fetched: list[tuple[int, int | None, int]] = []
    raw = backend.raw

    class Recording:
        def __getattr__(self, name):
            return getattr(raw, name)

        async def open_range(self, key, start=0, end=None):
            got = 0
            async for chunk in raw.open_range(key, start, end):
                got += len(chunk)
                yield chunk
            fetched.append((start, end, got))

    reader = EncryptedBlobStore(Recording(), backend.store.keys, segment_size=SEGMENT)
    start, end = 17 * SEGMENT + 100, 18 * SEGMENT + 50  # spans segments 17 and 18
    assert await read_all(reader.open_range("big/file", start, end)) == data[start:end]
    body_bytes = sum(got for _, _, got in fetched)
    assert body_bytes <= 2 * (SEGMENT + 16) + 300, fetched  # two segments + the header read
