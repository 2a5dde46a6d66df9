"""Envelope-encryption throughput on a 100 MiB stream, next to its ceiling in the same run.

    .venv/bin/python benchmarks/crypto_throughput.py [--size-mib 100] [--segment-kib 64] [--repeat 3]

Rows:
  ceiling: raw AES-256-GCM     one AESGCM.encrypt per segment, no framing, no async (the upper bound)
  encrypt_stream               async iterator in -> async iterator out (header + segments)
  decrypt_stream               the reverse, from the ciphertext chunks held in memory
  encrypt -> decrypt pipeline  both chained in one stream (what a put-then-get costs in CPU)
  storage: local plain / encrypted   put + full get through LocalBlobStore vs EncryptedBlobStore on top
MB/s are 10^6 bytes of plaintext per second; best of --repeat runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from shared.crypto import EncryptedBlobStore, InMemoryDataKeyStore, KeyRing  # noqa: E402
from shared.crypto.envelope import decrypt_stream, encrypt_stream  # noqa: E402
from shared.storage import LocalBlobStore  # noqa: E402

CHUNK = 1024 * 1024


async def source(block: bytes, total: int):
    sent = 0
    while sent < total:
        n = min(len(block), total - sent)
        yield block if n == len(block) else block[:n]
        sent += n


async def drain(stream) -> int:
    n = 0
    async for chunk in stream:
        n += len(chunk)
    return n


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--segment-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    total = args.size_mib * 1024 * 1024
    segment = args.segment_kib * 1024
    block = os.urandom(CHUNK)
    keys = InMemoryDataKeyStore(KeyRing.generate())
    key_id, dek = await keys.create("bench")

    results: dict[str, float] = {}

    async def measure(name: str, make) -> None:
        durations = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            await make()
            durations.append(time.perf_counter() - t0)
        results[name] = total / min(durations) / 1e6

    # Ceiling: raw AES-GCM over the same segments, no framing, no async machinery.
    aead = AESGCM(secrets.token_bytes(32))
    nonce_prefix = secrets.token_bytes(8)

    async def raw_gcm():
        done, i, view = 0, 0, memoryview(block)
        while done < total:
            for off in range(0, CHUNK, segment):
                aead.encrypt(nonce_prefix + i.to_bytes(4, "big"), view[off:off + segment], b"")
                i += 1
            done += CHUNK

    await measure("ceiling: raw AES-256-GCM", raw_gcm)
    await measure("encrypt_stream", lambda: drain(encrypt_stream(source(block, total), key_id=key_id,
                                                                 data_key=dek, segment_size=segment)))
    ciphertext = [c async for c in encrypt_stream(source(block, total), key_id=key_id, data_key=dek,
                                                  segment_size=segment)]

    async def replay():
        for c in ciphertext:
            yield c

    await measure("decrypt_stream", lambda: drain(decrypt_stream(replay(), keys.get)))
    del ciphertext
    await measure("encrypt -> decrypt pipeline", lambda: drain(decrypt_stream(
        encrypt_stream(source(block, total), key_id=key_id, data_key=dek, segment_size=segment), keys.get)))

    with tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp:
        plain = LocalBlobStore(Path(tmp) / "plain", fsync=False)
        encrypted = EncryptedBlobStore(LocalBlobStore(Path(tmp) / "enc", fsync=False), keys, segment_size=segment)

        async def put_get(store):
            await store.put("bench/object", source(block, total))
            assert await drain(store.open_range("bench/object")) == total

        await measure("storage: local plain put+get", lambda: put_get(plain))
        await measure("storage: local encrypted put+get", lambda: put_get(encrypted))

    ceiling = results["ceiling: raw AES-256-GCM"]
    print(f"plaintext {total / 1e6:.1f} MB, segment {segment // 1024} KiB, best of {args.repeat}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'path':38} {'MB/s':>9} {'ratio':>8}")
    for name, mbps in results.items():
        if name.startswith("storage"):
            ratio = f"{mbps / results['storage: local plain put+get']:.2f}x plain"
        else:
            ratio = f"{mbps / ceiling:.2f}x ceil"
        print(f"{name:38} {mbps:9.0f} {ratio:>12}")


if __name__ == "__main__":
    asyncio.run(main())
