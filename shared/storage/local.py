"""Blobs in a local directory: the embedded default.

Layout under `root_dir`: `objects/<key>` holds the objects, `tmp/` the in-flight writes. A put writes a
temp file, fsyncs it and `os.replace`s it into place, so readers see the old object or the new one,
never a partial one. All file IO runs in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import stat
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from shared.fileio import write_all
from shared.storage.base import DEFAULT_CONTENT_TYPE, clamp_range, validate_key, validate_prefix
from shared.storage.errors import ObjectKeyConflict, ObjectNotFound, StorageUnavailable

WRITE_BATCH = 1024 * 1024
READ_CHUNK = 1024 * 1024


class LocalBlobStore:
    def __init__(self, root_dir: Path | str, *, fsync: bool = True, read_chunk: int = READ_CHUNK) -> None:
        self.root = Path(root_dir).resolve()
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._fsync = fsync
        self._read_chunk = read_chunk
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._objects.mkdir(mode=0o700, exist_ok=True)
        self._tmp.mkdir(mode=0o700, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore(root_dir={str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self._objects.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, chunks: AsyncIterable[bytes], *,
                  content_type: str = DEFAULT_CONTENT_TYPE) -> int:
        target = self._path(key)
        tmp_path = self._tmp / f"{secrets.token_hex(16)}.part"
        handle = await asyncio.to_thread(_open_exclusive, tmp_path)
        written = 0
        try:
            batch: list[bytes] = []  # written with one writev per WRITE_BATCH, not joined first
            size = 0
            async for chunk in chunks:
                batch.append(chunk if type(chunk) is bytes else bytes(chunk))  # (a buffer its producer may reuse)
                size += len(chunk)
                if size >= WRITE_BATCH:
                    await asyncio.to_thread(write_all, handle.fileno(), batch)
                    written += size
                    batch, size = [], 0
            if batch:
                await asyncio.to_thread(write_all, handle.fileno(), batch)
                written += size
            await asyncio.to_thread(self._commit, handle, tmp_path, target, key)
        except BaseException:
            await asyncio.to_thread(_discard, handle, tmp_path)
            raise
        return written

    def _commit(self, handle, tmp_path: Path, target: Path, key: str) -> None:
        handle.flush()
        if self._fsync:
            os.fsync(handle.fileno())
        handle.close()
        for attempt in range(3):  # a concurrent delete may prune the parent between mkdir and replace
            try:
                _make_parents(target.parent, self._objects, key)
                if target.is_dir():
                    raise ObjectKeyConflict(key, "a key with this prefix followed by '/' already exists")
                os.replace(tmp_path, target)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if self._fsync:
            _fsync_dir(target.parent)

    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        clamp_range(start, end, 0)  # validate arguments before touching the disk
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        try:
            size = os.fstat(handle.fileno()).st_size
            first, stop = clamp_range(start, end, size)
            remaining = stop - first
            if remaining <= 0:
                return
            await asyncio.to_thread(handle.seek, first)
            while remaining > 0:
                data = await asyncio.to_thread(handle.read, min(self._read_chunk, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            handle.close()

    async def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not _is_regular(st):
            raise ObjectNotFound(key)
        return st.st_size

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, self._path(key))

    def _delete(self, path: Path) -> None:
        try:
            if path.is_dir():
                return
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        parent = path.parent
        while parent != self._objects:  # prune empty directories so `a` can become an object again
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        validate_prefix(prefix)
        keys = await asyncio.to_thread(self._list, prefix)
        for key in keys:
            yield key

    def _list(self, prefix: str) -> list[str]:
        # Walk only the deepest directory the prefix fully names.
        base_parts = prefix.split("/")[:-1]
        base = self._objects.joinpath(*base_parts) if base_parts else self._objects
        if not base.is_dir():
            return []
        found: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, self._objects)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        found.sort()
        return found

    async def ping(self) -> None:
        await asyncio.to_thread(self._ping)

    def _ping(self) -> None:
        if not self._objects.is_dir() or not self._tmp.is_dir():
            raise StorageUnavailable(f"blob directory {self.root} is missing")
        probe = self._tmp / f"ping-{secrets.token_hex(8)}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageUnavailable(f"blob directory {self.root} is not writable: {exc.strerror}") from None

    async def aclose(self) -> None:
        return None


def _open_exclusive(path: Path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb", buffering=0)


def _discard(handle, path: Path) -> None:
    try:
        handle.close()
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _make_parents(directory: Path, root: Path, key: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ObjectKeyConflict(key, "a parent segment of this key is already an object") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ObjectKeyConflict(key, "a parent segment of this key is already an object") from None
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
