"""A seekable scratch file whose bytes on disk are ciphertext under a key that lives only in memory.

Zip archives need random access (the central directory sits at the end), so an uploaded archive has to
land somewhere seekable before it can be read. This spool keeps it off the heap without writing plaintext
to disk: AES-256-CTR under a per-spool random key (CTR gives random access; the key dies with the object,
and the file is unlinked as soon as it is opened).
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


class EncryptedSpool(io.RawIOBase):
    def __init__(self, directory: str | None = None) -> None:
        super().__init__()
        fd, path = tempfile.mkstemp(prefix="quorum-spool-", dir=directory)
        os.unlink(path)  # nothing to clean up if the process dies
        self._file = os.fdopen(fd, "w+b", buffering=0)
        self._key = secrets.token_bytes(32)
        self._nonce = secrets.token_bytes(8)
        self._pos = 0
        self._size = 0

    def _cipher_at(self, offset: int):
        block, skip = divmod(offset, BLOCK)
        counter = self._nonce + block.to_bytes(8, "big")
        ctx = Cipher(algorithms.AES(self._key), modes.CTR(counter)).encryptor()
        if skip:
            ctx.update(b"\x00" * skip)
        return ctx

    # -- writing (append only, before reading) ---------------------------------------------------------

    def append(self, data: bytes) -> None:
        if not data:
            return
        self._file.seek(self._size)
        self._file.write(self._cipher_at(self._size).update(data))
        self._size += len(data)

    @property
    def size(self) -> int:
        return self._size

    # -- reading (io.RawIOBase) ----------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:  # noqa: ANN001
        want = min(len(buffer), max(0, self._size - self._pos))
        if want == 0:
            return 0
        self._file.seek(self._pos)
        data = self._file.read(want)
        plain = self._cipher_at(self._pos).update(data)
        buffer[: len(plain)] = plain
        self._pos += len(plain)
        return len(plain)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self._key = b""
        super().close()
