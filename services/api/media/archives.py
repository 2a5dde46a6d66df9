"""Zip archives of media, opened defensively.

Before anything is inflated the central directory is checked: member count, the declared total size and
every member's compression ratio against the limits, and each member name against traversal. The
declared sizes can lie, so while inflating the real byte counts are enforced too: a member that inflates
past its declared size, the ratio, or the archive's total budget aborts the archive (a decompression bomb).
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from services.api.media.names import UnsafeFileName, check_member_path
from shared.errors import PayloadTooLarge, Unprocessable

READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 10_000
    max_total_bytes: int = 2 * 1024 ** 3
    max_member_bytes: int = 512 * 1024 ** 2
    max_ratio: float = 100.0


class DecompressionBomb(PayloadTooLarge):
    type, title = "decompression-bomb", "Archive expands beyond the allowed limits"


class BadArchive(Unprocessable):
    type, title = "bad-archive", "Archive cannot be read"


@dataclass(frozen=True)
class MemberInfo:
    name: str
    declared_size: int
    compressed_size: int


def inspect_archive(file: BinaryIO, limits: ArchiveLimits) -> tuple[zipfile.ZipFile, list[MemberInfo]]:
    """Open the archive and vet its directory; raises before a single byte is inflated."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise BadArchive(f"not a readable zip archive ({type(exc).__name__})") from None
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > limits.max_members:
        raise DecompressionBomb(f"archive holds {len(infos)} files; the limit is {limits.max_members}")
    total = 0
    members = []
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        check_member_path(name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeFileName(f"archive member {name!r} is a symbolic link", name=name)
        if info.flag_bits & 0x1:
            raise BadArchive(f"archive member {name!r} is encrypted")
        if name in seen:
            raise BadArchive(f"archive lists {name!r} twice")
        seen.add(name)
        if info.file_size > limits.max_member_bytes:
            raise DecompressionBomb(f"archive member {name!r} expands to {info.file_size} bytes; "
                                    f"the limit is {limits.max_member_bytes}")
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise DecompressionBomb(f"archive member {name!r} has compression ratio {ratio:.0f}:1; "
                                    f"the limit is {limits.max_ratio:.0f}:1")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise DecompressionBomb(f"archive expands to more than {limits.max_total_bytes} bytes")
        members.append(MemberInfo(name, info.file_size, info.compress_size))
    return archive, members


class ExpansionBudget:
    """Counts inflated bytes across the whole archive."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.total = 0

    def read_member(self, archive: zipfile.ZipFile, member: MemberInfo) -> Iterator[bytes]:
        produced = 0
        ceiling = min(member.declared_size, self.limits.max_member_bytes,
                      int(max(member.compressed_size, 1) * self.limits.max_ratio))
        try:
            with archive.open(member.name) as handle:
                while True:
                    chunk = handle.read(READ_CHUNK)
                    if not chunk:
                        break
                    produced += len(chunk)
                    self.total += len(chunk)
                    if produced > ceiling:
                        raise DecompressionBomb(f"archive member {member.name!r} inflates beyond its declared "
                                                f"size or the allowed ratio")
                    if self.total > self.limits.max_total_bytes:
                        raise DecompressionBomb(f"archive expands to more than {self.limits.max_total_bytes} bytes")
                    yield chunk
        except zipfile.BadZipFile as exc:
            raise BadArchive(f"archive member {member.name!r} is corrupt ({exc})") from None
