"""Object storage: one async `BlobStore` contract, a local-directory and an S3/MinIO implementation.

Encryption at rest is a wrapper over any of them: `shared.crypto.EncryptedBlobStore`. `S3BlobStore` loads on first
use (PEP 562), so a process on the local store never imports the S3 client (~7 MB).
"""
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from shared.storage.s3 import S3BlobStore


def __getattr__(name: str) -> Any:
    if name == "S3BlobStore":
        from shared.storage.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
