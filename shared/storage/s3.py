"""Blobs in S3 / MinIO through the `minio` client.

The client is synchronous, so every call runs in this store's own thread pool. A put streams: parts are
cut from the async chunk iterator and uploaded with minio's S3 calls (CreateMultipartUpload, UploadPart,
CompleteMultipartUpload) while the next part fills, so an upload overlaps its source and holds at most
`parts_in_flight` + 1 parts. minio's own `put_object` cannot do both: it reads one part at a time from a
file-like object, and in parallel mode queues parts without a bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from shared.storage.base import DEFAULT_CONTENT_TYPE, clamp_range, validate_key, validate_prefix
from shared.storage.errors import ObjectNotFound, StorageUnavailable

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
# Parts then grow with the object (S3 allows 10,000): 10,000 parts hold ~50,000 part sizes (245 GiB of 5 MiB).
PARTS_AT_PART_SIZE = 2500
READ_CHUNK = 256 * 1024
LIST_BATCH = 1000
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "NoSuchVersion"}


class S3BlobStore:
    def __init__(self, endpoint: str, *, bucket: str, access_key: str | None = None,
                 secret_key: str | None = None, secure: bool | None = None, region: str | None = None,
                 create_bucket: bool = True, part_size: int = 8 * 1024 * 1024, parts_in_flight: int = 2,
                 max_workers: int = 8,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        host, scheme_secure = _split_endpoint(endpoint)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3 minimum)")
        self.endpoint = host
        self.bucket = bucket
        self.secure = scheme_secure if secure is None else secure
        self._region = region
        self._create_bucket = create_bucket
        self._part_size = part_size
        self._parts_in_flight = max(1, parts_in_flight)
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_workers,
            retries=urllib3.Retry(total=3, connect=1, backoff_factor=0.1,
                                  status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, secure=self.secure,
                             region=region, http_client=http)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                                           thread_name_prefix="s3-blob")

    def __repr__(self) -> str:  # credentials stay out of reprs and logs
        scheme = "https" if self.secure else "http"
        return f"S3BlobStore(endpoint={scheme}://{self.endpoint!s}, bucket={self.bucket!r})"

    async def _run(self, fn, *args, **kwargs):
        return await self._wait(self._pool.submit(fn, *args, **kwargs))

    async def _wait(self, call: concurrent.futures.Future):
        try:
            return await asyncio.wrap_future(call)
        except S3Error:
            raise
        except (MinioException, Urllib3HTTPError, ConnectionError) as exc:
            raise StorageUnavailable(f"object storage at {self.endpoint} unreachable: {_describe(exc)}") from exc

    async def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                exists = await self._run(self._client.bucket_exists, self.bucket)
                if not exists:
                    if not self._create_bucket:
                        raise StorageUnavailable(f"bucket {self.bucket!r} does not exist")
                    try:
                        await self._run(self._client.make_bucket, self.bucket, self._region)
                    except S3Error as exc:
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except S3Error as exc:
                raise StorageUnavailable(f"object storage at {self.endpoint} unusable: {_describe(exc)}") from None
            self._bucket_ready = True

    async def put(self, key: str, chunks: AsyncIterable[bytes], *,
                  content_type: str = DEFAULT_CONTENT_TYPE) -> int:
        """Parts are cut on the event loop as the chunks arrive and uploaded in this store's threads while the
        next part fills: at most `parts_in_flight` parts uploading and one filling. A failed upload (or a
        failing `chunks`) aborts the multipart upload, so no orphan parts stay billed in the bucket."""
        validate_key(key)
        await self.ensure_bucket()
        headers = {"Content-Type": content_type or DEFAULT_CONTENT_TYPE}
        filling: list[bytes] = []
        filled = total = 0
        upload_id: str | None = None
        uploads: collections.deque[asyncio.Future] = collections.deque()
        etags: list[str] = []
        part_size = self._part_size  # grows past PARTS_AT_PART_SIZE parts

        async def send(part: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                upload_id = await self._run(self._client._create_multipart_upload, self.bucket, key, dict(headers))
            while len(uploads) >= self._parts_in_flight:
                etags.append(await uploads.popleft())
            number = len(etags) + len(uploads) + 1
            uploads.append(asyncio.ensure_future(self._run(
                self._client._upload_part, self.bucket, key, part, None, upload_id, number)))

        try:
            async for chunk in chunks:
                # A producer may refill its buffer once this loop asks for more: keep only immutable bytes.
                filling.append(chunk if type(chunk) is bytes else bytes(chunk))
                filled += len(chunk)
                total += len(chunk)
                if filled >= part_size:
                    part = b"".join(filling)
                    filling.clear()
                    filled = 0
                    await send(part)
                    part_size = max(self._part_size, total // PARTS_AT_PART_SIZE)
            if upload_id is None:  # small enough for one PUT
                await self._run(self._client._put_object, self.bucket, key, b"".join(filling), dict(headers))
                return total
            if filling:
                await send(b"".join(filling))
            while uploads:
                etags.append(await uploads.popleft())
            await self._run(self._client._complete_multipart_upload, self.bucket, key, upload_id,
                            [Part(number, etag) for number, etag in enumerate(etags, 1)])
        except BaseException:
            for upload in uploads:
                upload.cancel()
            if uploads:
                await asyncio.gather(*uploads, return_exceptions=True)
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._run(self._client._abort_multipart_upload, self.bucket, key,
                                                   upload_id))
            raise
        return total

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        validate_key(key)
        clamp_range(start, end, 0)  # argument validation
        if end is not None and end <= start:
            return
        length = 0 if end is None else end - start
        try:
            response = await self._run(self._client.get_object, self.bucket, key, offset=start, length=length)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            if exc.code == "InvalidRange":  # start at/after the end: an empty slice
                if await self.exists(key):
                    return
                raise ObjectNotFound(key) from None
            raise
        chunks: Iterator[bytes] = response.stream(READ_CHUNK)

        def close(_: object = None) -> None:
            response.close()
            response.release_conn()

        ahead = self._pool.submit(next, chunks, None)  # the next chunk arrives while the caller uses this one
        try:
            while (data := await self._wait(ahead)) is not None:
                ahead = self._pool.submit(next, chunks, None)
                if data:
                    yield data
        finally:
            if ahead.done():
                close()
            else:  # a thread is still reading the response: close it after, not under it
                ahead.add_done_callback(close)

    async def size(self, key: str) -> int:
        validate_key(key)
        try:
            stat = await self._run(self._client.stat_object, self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            raise
        return int(stat.size or 0)

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        validate_key(key)
        try:
            await self._run(self._client.remove_object, self.bucket, key)
        except S3Error as exc:
            if exc.code not in _MISSING:
                raise

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        validate_prefix(prefix)
        try:
            objects = await self._run(self._client.list_objects, self.bucket, prefix=prefix or None,
                                      recursive=True)
            while True:
                batch = await self._run(_take, objects, LIST_BATCH)
                for obj in batch:
                    if not obj.is_dir:
                        yield obj.object_name
                if len(batch) < LIST_BATCH:
                    break
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise

    async def ping(self) -> None:
        self._bucket_ready = False
        await self.ensure_bucket()

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client._http.clear()


def _take(iterator: Iterator, n: int) -> list:
    out = []
    for item in iterator:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _split_endpoint(endpoint: str) -> tuple[str, bool]:
    """Accept `host:port` or `http(s)://host:port`; return (host:port, secure-by-scheme)."""
    if "://" not in endpoint:
        return endpoint.rstrip("/"), True
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"S3 endpoint scheme must be http or https, got {parts.scheme!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError("S3 endpoint must be scheme://host[:port] without path, query or credentials")
    return parts.netloc, parts.scheme == "https"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}"
    reason = getattr(exc, "reason", None)
    return type(exc).__name__ + (f" ({type(reason).__name__})" if reason is not None else "")
