"""Whole buffers to a file descriptor: `os.write` and `os.writev` may write less than they are given."""

from __future__ import annotations

import os
from collections.abc import Sequence

IOV_MAX = 512  # buffers per writev (Linux allows 1024)


def write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    """Write `parts`, in order, with as few writev calls as the kernel allows."""
    pending = [p for p in parts if len(p)]
    while pending:
        done = os.writev(fd, pending[:IOV_MAX])
        while pending and done >= len(pending[0]):
            done -= len(pending[0])
            pending.pop(0)
        if done:  # a short write inside a part
            pending[0] = memoryview(pending[0])[done:]
