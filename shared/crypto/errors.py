"""Crypto errors. Messages never contain key material or plaintext."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for everything in `shared.crypto`."""


class DecryptionError(CryptoError):
    """Ciphertext failed authentication or is malformed: tampered, truncated, reordered, or the wrong key.

    Always fatal for the object or secret in question; never retry with "best effort" output."""


class KeyVersionUnavailable(DecryptionError):
    """Sealed/wrapped under a key-encryption-key version this key ring does not (or no longer) hold."""

    def __init__(self, version: int) -> None:
        super().__init__(f"key-encryption key version {version} is not in the key ring (retired or unknown)")
        self.version = version


class KeyRingError(CryptoError):
    """The key ring configuration or key file is unusable (bad format, unsafe permissions, read-only)."""


class DataKeyNotFound(DecryptionError, LookupError):
    """No data key with this id was ever created (for an object: its header names a key that does not
    exist — corrupt or forged — so it cannot be decrypted)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no data key {key_id!r}")
        self.key_id = key_id


class KeyDestroyed(CryptoError):
    """The data key was destroyed (crypto-shredded): the data it protected is unrecoverable (→ 410 Gone)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"data key {key_id!r} was destroyed; its data is unrecoverable")
        self.key_id = key_id
