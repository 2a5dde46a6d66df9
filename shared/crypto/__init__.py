"""Encryption at rest: a versioned key ring, sealed small secrets, and envelope-encrypted blobs.

- `KeyRing`: versioned 256-bit key-encryption keys (from `QUORUM_KEYRING` or a 0600 key file).
- `seal` / `unseal` / `reseal`: AES-256-GCM tokens for TOTP seeds, webhook secrets.
- `DataKeyStore`: per-object data keys, stored wrapped; `destroy*` = crypto-shredding; `rewrap` = rotation.
- `encrypt_stream` / `decrypt_stream` / `EncryptedBlobStore`: segmented AES-256-GCM, streamed and ranged.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): the import workers need only the data-key wrapping, not the blob stores
# (and with them the S3 client and its dependencies, ~25 MB per process).
_EXPORTS = {
    "shared.crypto.datakeys": ("DataKeyRecord", "DataKeyStore", "InMemoryDataKeyStore", "WrappedDataKey",
                               "new_data_key_id", "unwrap_data_key", "wrap_data_key"),
    "shared.crypto.encrypted_store": ("EncryptedBlobStore", "object_scope"),
    "shared.crypto.envelope": ("DEFAULT_SEGMENT_SIZE", "EnvelopeHeader", "SegmentCipher", "ciphertext_size",
                               "decrypt_bytes", "decrypt_stream", "encrypt_bytes", "encrypt_stream",
                               "plaintext_size"),
    "shared.crypto.errors": ("CryptoError", "DataKeyNotFound", "DecryptionError", "KeyDestroyed", "KeyRingError",
                             "KeyVersionUnavailable"),
    "shared.crypto.keyring": ("KeyRing", "keyring_from_settings"),
    "shared.crypto.sealing": ("reseal", "seal", "sealed_version", "unseal"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'shared.crypto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "CryptoError",
    "DataKeyNotFound",
    "DataKeyRecord",
    "DataKeyStore",
    "DecryptionError",
    "EncryptedBlobStore",
    "EnvelopeHeader",
    "InMemoryDataKeyStore",
    "KeyDestroyed",
    "KeyRing",
    "KeyRingError",
    "KeyVersionUnavailable",
    "SegmentCipher",
    "WrappedDataKey",
    "ciphertext_size",
    "decrypt_bytes",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_stream",
    "keyring_from_settings",
    "new_data_key_id",
    "object_scope",
    "plaintext_size",
    "reseal",
    "seal",
    "sealed_version",
    "unseal",
    "unwrap_data_key",
    "wrap_data_key",
]
