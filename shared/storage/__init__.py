"""Object storage: one async `BlobStore` contract, a local-directory and an S3/MinIO implementation.

Encryption at rest is a wrapper over any of them: `shared.crypto.EncryptedBlobStore`.
"""

from shared.storage.base import (
    DEFAULT_CONTENT_TYPE,
    BlobStore,
    clamp_range,
    iter_bytes,
    read_all,
    validate_key,
    validate_prefix,
)
from shared.storage.errors import InvalidObjectKey, ObjectKeyConflict, ObjectNotFound, StorageUnavailable
from shared.storage.factory import create_blob_store
from shared.storage.local import LocalBlobStore
from shared.storage.s3 import S3BlobStore

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "BlobStore",
    "InvalidObjectKey",
    "LocalBlobStore",
    "ObjectKeyConflict",
    "ObjectNotFound",
    "S3BlobStore",
    "StorageUnavailable",
    "clamp_range",
    "create_blob_store",
    "iter_bytes",
    "read_all",
    "validate_key",
    "validate_prefix",
]
