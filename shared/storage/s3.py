"""Blobs in S3 / MinIO through the `minio` client.

The client is synchronous, so every call runs in this store's own thread pool. A put streams: the async
chunk iterator is bridged to the file-like `read()` minio wants, and minio uploads one part at a time
(multipart above `part_size`), so at most about one part is in memory per upload.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from shared.storage.base import DEFAULT_CONTENT_TYPE, clamp_range, validate_key, validate_prefix
from shared.storage.errors import ObjectNotFound, StorageUnavailable

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last
READ_CHUNK = 256 * 1024
LIST_BATCH = 1000
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket", "NoSuchVersion"}


class S3BlobStore:
    def __init__(self, endpoint: str, *, bucket: str, access_key: str | None = None,
                 secret_key: str | None = None, secure: bool | None = None, region: str | None = None,
                 create_bucket: bool = True, part_size: int = 8 * 1024 * 1024, max_workers: int = 8,
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
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
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
        validate_key(key)
        await self.ensure_bucket()
        reader = _AsyncToSyncReader(chunks, asyncio.get_running_loop())
        # num_parallel_uploads=1: minio queues parts for parallel upload without a bound, which would let a
        # fast producer buffer the whole object in memory.
        try:
            await self._run(self._client.put_object, self.bucket, key, reader, -1,
                            content_type=content_type or DEFAULT_CONTENT_TYPE, part_size=self._part_size,
                            num_parallel_uploads=1)
        except Exception:
            if reader.source_error is not None:  # the caller's stream failed, not the storage
                raise reader.source_error from None
            raise
        return reader.total

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
        try:
            chunks: Iterator[bytes] = response.stream(READ_CHUNK)
            while True:
                data = await self._run(next, chunks, None)
                if data is None:
                    break
                if data:
                    yield data
        finally:
            response.close()
            response.release_conn()

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


class _AsyncToSyncReader:
    """File-like `read(n)` for minio's worker thread, pulling chunks from an async iterator on the loop."""

    def __init__(self, chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._iter = chunks.__aiter__()
        self._loop = loop
        self._pending = b""
        self._eof = False
        self.total = 0
        self.source_error: BaseException | None = None

    def _next_chunk(self) -> bytes | None:
        future = asyncio.run_coroutine_threadsafe(self._anext(), self._loop)
        return future.result()

    async def _anext(self) -> bytes | None:
        try:
            return await self._iter.__anext__()
        except StopAsyncIteration:
            return None
        except BaseException as exc:
            self.source_error = exc
            raise

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("unbounded read() would hold the whole stream in memory")
        parts = [self._pending] if self._pending else []
        have = len(self._pending)
        self._pending = b""
        while have < size and not self._eof:
            chunk = self._next_chunk()
            if chunk is None:
                self._eof = True
                break
            chunk = bytes(chunk)
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if len(data) > size:
            data, self._pending = data[:size], data[size:]
        self.total += len(data)
        return data


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
