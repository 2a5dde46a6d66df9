"""Media path: upload (multipart → sniff → encrypt → store), full download and ranged reads, with memory.

    .venv/bin/python benchmarks/media_streaming.py [--mib 256] [--ranges 200] [--s3]

Runs the api app in-process (httpx ASGI transport) against PostgreSQL/Redis on 127.0.0.1 (or
QUORUM_BENCH_DATABASE_URL / QUORUM_BENCH_REDIS_URL) in a throwaway database; storage is a temp directory
(or a moto S3 server with --s3). The upload is streamed from a file on disk, so the process' Python heap
peak (tracemalloc) shows whether anything holds the file whole. Figures: MB/s (10^6 bytes/s) and the
ratio to a plain copy of the same file through the same storage without Quorum (the floor of the path).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--ranges", type=int, default=200)
    parser.add_argument("--s3", action="store_true")
    args = parser.parse_args()

    import httpx

    from services.api.app import create_app
    from services.api.identity.deps import identity_of
    from services.api.identity.models import Organization
    from services.api.identity.tokens import sign
    from services.api.keys.service import keyring, new_project_secret
    from services.api.media.service import media_blob_key
    from services.api.projects.models import Project
    from shared.auth.tokens import ACCESS_TYP
    from shared.config import Settings
    from shared.embedded import create_database
    from shared.migrations import upgrade_all
    from tests.conftest import _drop_database, _with_database
    from tests.support.s3 import start_s3_process

    admin = os.environ.get("QUORUM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("QUORUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"quorum_bench_media_{secrets.token_hex(3)}"
    await asyncio.to_thread(create_database, admin, name)
    url = _with_database(admin, name)
    stop_s3 = None
    tmp = Path(tempfile.mkdtemp(prefix="quorum-bench-media-"))
    try:
        await asyncio.to_thread(upgrade_all, url)
        overrides = {}
        if args.s3:
            from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

            endpoint, stop_s3 = start_s3_process()  # its own process: its memory is not ours
            overrides = dict(s3_endpoint=endpoint, s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY)
        settings = Settings(environment="test", database_url=url, redis_url=redis_url, data_dir=tmp,
                            blob_dir=tmp / "blobs", keyring_file=tmp / "keyring.json", migrate_on_start=False,
                            stream_prefix=f"bench-{secrets.token_hex(3)}", max_media_bytes=(args.mib + 1) << 20,
                            **overrides)
        size = args.mib << 20
        source = tmp / "upload.txt"
        line = b"the quick brown fox jumps over the lazy dog, a plain text line for the benchmark\n"
        with source.open("wb") as handle:
            for _ in range(size // len(line)):
                handle.write(line)
            handle.write(b"x" * (size - (size // len(line)) * len(line)))

        app = create_app(settings, run_background=False)
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            ctx.extras["key_source"] = identity_of(ctx).keys
            async with ctx.session_factory() as session, session.begin():
                org = Organization(id=uuid.uuid4(), name="bench", slug=f"bench-{secrets.token_hex(4)}")
                session.add(org)
                await session.flush()
                pid = uuid.uuid4()
                session.add(Project(id=pid, org_id=org.id, name="bench",
                                    secret_sealed=new_project_secret(keyring(ctx), pid)))
            token, _ = await sign(identity_of(ctx), {"sub": str(uuid.uuid4()), "kind": "user", "org": str(org.id),
                                                     "roles": ["org_admin"], "proj": {}, "sid": str(uuid.uuid4()),
                                                     "ver": 0}, typ=ACCESS_TYP, ttl=300)
            headers = {"Authorization": f"Bearer {token}"}
            raw = ctx.extras["raw_blob_store"]

            # floor: the same bytes through the same storage, no multipart/sniff/hash/encryption
            async def file_chunks():
                with source.open("rb") as handle:
                    while chunk := handle.read(256 * 1024):
                        yield chunk

            start = time.perf_counter()
            await raw.put("bench/plain-copy", file_chunks())
            plain_put = size / (time.perf_counter() - start) / 1e6
            start = time.perf_counter()
            async for _ in raw.open_range("bench/plain-copy"):
                pass
            plain_get = size / (time.perf_counter() - start) / 1e6

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
                tracemalloc.start()
                start = time.perf_counter()
                with source.open("rb") as handle:
                    response = await client.post(f"/api/v1/projects/{pid}/media", headers=headers,
                                                 files={"file": ("upload.txt", handle, "text/plain")})
                upload_s = time.perf_counter() - start
                _, upload_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert response.status_code == 201, response.text
                media_id = response.json()["id"]

            from services.api.media import service
            from services.api.media.models import Media

            async with ctx.session_factory() as session:
                row = await session.get(Media, uuid.UUID(media_id))
            handle = service._handle(row)
            tracemalloc.start()
            start = time.perf_counter()
            async for _ in await service.open_media(ctx, handle):
                pass
            download_s = time.perf_counter() - start
            _, download_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()

            rng = random.Random(7)
            latencies = []
            for _ in range(args.ranges):
                offset = rng.randrange(0, size - 4096)
                start = time.perf_counter()
                async for _ in await service.open_media(ctx, handle, offset, offset + 4096):
                    pass
                latencies.append(time.perf_counter() - start)
            latencies.sort()
            assert media_blob_key(pid, media_id) == row.blob_key
            await raw.delete("bench/plain-copy")

        backend = "S3 API (moto server, separate process)" if args.s3 else "local directory"
        up, down = size / upload_s / 1e6, size / download_s / 1e6
        print(f"media streaming, {args.mib} MiB plain-text file, storage: {backend}")
        print(f"  upload   (HTTP multipart → sniff → keyed hash → encrypt → store): {up:7.1f} MB/s   "
              f"{up / plain_put:.2f}x plain put ({plain_put:.1f} MB/s)   heap peak {upload_peak / 2**20:.1f} MiB")
        print(f"  download (fetch → decrypt, whole object):                       {down:7.1f} MB/s   "
              f"{down / plain_get:.2f}x plain get ({plain_get:.1f} MB/s)   heap peak {download_peak / 2**20:.1f} MiB")
        print(f"  ranged read, 4 KiB at random offsets (x{args.ranges}): p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms"
              f"   p95 {latencies[int(len(latencies) * 0.95)] * 1e3:.2f} ms")
        print(f"  heap peak / file size: upload {upload_peak / size:.3%}, download {download_peak / size:.3%}")
        return 0
    finally:
        if stop_s3:
            stop_s3()
        await asyncio.to_thread(_drop_database, admin, name)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
