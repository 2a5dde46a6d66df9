"""Megabytes between the server process and its import workers through tmpfs files (/dev/shm), not the
pool's pipe: a pipe moves 1.6 MB in 3-4 ms here with both processes busy the whole time (64 kB per
read, pickling on top), a tmpfs file is one memory copy each way.

A handoff holds plaintext of an upload (server → worker) or ciphertext (worker → server) for the few
milliseconds between its writing and its reading; it lives in RAM, as the same bytes would in either
process's memory. Where no tmpfs is writable the bytes go through the pipe as before.

An import reuses its handoff files (`HandoffFiles`): a new file for each handoff cost the allocation and
zeroing of its pages and their release at the unlink, three times the copying itself (0.6 ms per MiB there
and back, 0.15 ms with a file written before). They are removed when the import ends; a file left by a
process that died is removed by `sweep` when the next pool starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass

from shared.fileio import write_all

DIRECTORY = "/dev/shm"
PREFIX = "quorum-import-"
SMALLEST = 64 * 1024  # below this the pipe is as cheap


@dataclass(frozen=True)
class Handoff:
    path: str
    size: int
    kept: bool = False  # a file of a `HandoffFiles` set: its owner reuses it, so claiming it does not remove it


def _usable() -> bool:
    return os.path.isdir(DIRECTORY) and os.access(DIRECTORY, os.W_OK | os.X_OK)


USABLE = _usable()


def stash(data: bytes | bytearray | memoryview, into: str | None = None
          ) -> Handoff | bytes | bytearray | memoryview:
    """`data` as a handoff to `claim` in another process (or as itself when small or without tmpfs): in the
    file `into` (one of a `HandoffFiles` set) or else in a new file, removed when claimed."""
    if not USABLE or len(data) < SMALLEST:
        return data
    if into is not None:
        fd = os.open(into, os.O_WRONLY)
        try:
            write_all(fd, [data])
        finally:
            os.close(fd)
        return Handoff(into, len(data), kept=True)
    path = _new_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, [data])
    except BaseException:
        os.close(fd)
        discard(Handoff(path, len(data)))
        raise
    os.close(fd)
    return Handoff(path, len(data))


def _new_path() -> str:
    return os.path.join(DIRECTORY, f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}")


def claim(item: Handoff | bytes | bytearray | memoryview) -> bytearray:
    """The bytes of a handoff, as a bytearray. Its file is then removed, unless its owner reuses it."""
    if not isinstance(item, Handoff):
        return bytearray(item)
    out = bytearray(item.size)
    with open(item.path, "rb", buffering=0) as f:
        view = memoryview(out)
        while view:
            n = f.readinto(view)
            if not n:
                raise EOFError(f"import handoff {item.path} is shorter than {item.size} bytes")
            view = view[n:]
    if not item.kept:
        os.unlink(item.path)
    return out


def discard(item: object) -> None:
    if isinstance(item, Handoff) and not item.kept:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item.path)


class HandoffFiles:
    """The reusable handoff files of one import, in the process that runs it: `take` one (None without
    tmpfs), pass its path to `stash`, `give_back` it once the other side has read it; `close` removes them."""

    def __init__(self) -> None:
        self._free: list[str] = []
        self._all: list[str] = []

    def take(self) -> str | None:
        if not USABLE:
            return None
        if self._free:
            return self._free.pop()
        path = _new_path()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._all.append(path)
        return path

    def give_back(self, path: str | None) -> None:
        if path is not None and path in self._all and path not in self._free:
            self._free.append(path)

    def release(self, item: object) -> None:
        """After reading `item` (or deciding not to): its file is reused if it is one of these, else removed."""
        if isinstance(item, Handoff) and item.kept:
            self.give_back(item.path)
        else:
            discard(item)

    def close(self) -> None:
        for path in self._all:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._all.clear()
        self._free.clear()


def sweep(older_than: float = 3600.0) -> int:
    """Remove handoffs left by processes that died between writing and reading (at pool start)."""
    if not USABLE:
        return 0
    removed = 0
    limit = time.time() - older_than
    for entry in os.scandir(DIRECTORY):
        if entry.name.startswith(PREFIX):
            with contextlib.suppress(OSError):
                pid = int(entry.name[len(PREFIX):].split("-", 1)[0])
                if not _alive(pid) or entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
