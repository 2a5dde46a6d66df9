import os
from pathlib import Path

import pytest

from shared import fileio


def _written(path: Path, parts: list) -> bytes:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        fileio.write_all(fd, parts)
    finally:
        os.close(fd)
    return path.read_bytes()


def test_write_all_writes_every_part_in_order(tmp_path: Path) -> None:
    parts = [os.urandom(n) for n in (0, 1, 70_000, 0, 5, 300_000)] + [bytearray(b"tail"), memoryview(b"view")]
    assert _written(tmp_path / "out", parts) == b"".join(bytes(p) for p in parts)


def test_write_all_resumes_after_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel may take fewer bytes than given (signals, pipes, quotas): the rest, from the middle of a part,
    follows in the next calls. Each call here writes at most 777 real bytes."""
    real = os.writev

    def short(fd: int, buffers: list) -> int:
        data = b"".join(bytes(b) for b in buffers)[:777]
        return real(fd, [data])

    monkeypatch.setattr(fileio.os, "writev", short)
    parts = [os.urandom(n) for n in (10, 2000, 1, 5000)] * 300  # more parts than one writev takes
    assert _written(tmp_path / "out", parts) == b"".join(parts)
