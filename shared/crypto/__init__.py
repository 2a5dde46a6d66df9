"""Encryption at rest: a versioned key ring, sealed small secrets, and envelope-encrypted blobs.

- `KeyRing`: versioned 256-bit key-encryption keys (from `QUORUM_KEYRING` or a 0600 key file).
- `seal` / `unseal` / `reseal`: AES-256-GCM tokens for TOTP seeds, webhook secrets.
- `DataKeyStore`: per-object data keys, stored wrapped; `destroy*` = crypto-shredding; `rewrap` = rotation.
- `encrypt_stream` / `decrypt_stream` / `EncryptedBlobStore`: segmented AES-256-GCM, streamed and ranged.
"""

from shared.crypto.datakeys import (
    DataKeyRecord,
    DataKeyStore,
    InMemoryDataKeyStore,
    WrappedDataKey,
    new_data_key_id,
    unwrap_data_key,
    wrap_data_key,
)
from shared.crypto.encrypted_store import EncryptedBlobStore, object_scope
from shared.crypto.envelope import (
    DEFAULT_SEGMENT_SIZE,
    EnvelopeHeader,
    SegmentCipher,
    ciphertext_size,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    plaintext_size,
)
from shared.crypto.errors import (
    CryptoError,
    DataKeyNotFound,
    DecryptionError,
    KeyDestroyed,
    KeyRingError,
    KeyVersionUnavailable,
)
from shared.crypto.keyring import KeyRing, keyring_from_settings
from shared.crypto.sealing import reseal, seal, sealed_version, unseal

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
