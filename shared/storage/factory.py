"""Build the configured blob store from settings (duck-typed, so any object with these attributes works)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from shared.storage.base import BlobStore
from shared.storage.local import LocalBlobStore


class StorageSettings(Protocol):
    s3_endpoint: str | None
    s3_access_key: str | None
    s3_secret_key: Any  # pydantic SecretStr | str | None
    s3_bucket: str
    s3_secure: bool
    s3_region: str | None
    blob_dir: Path | None


def create_blob_store(settings: Any, *, create_bucket: bool = True) -> BlobStore:
    """S3/MinIO when `s3_endpoint` is set, else a local directory (`resolved_blob_dir`, `blob_dir`,
    or `<data_dir>/blobs`). The result stores bytes as given: wrap it in `EncryptedBlobStore`."""
    endpoint = getattr(settings, "s3_endpoint", None)
    if endpoint:
        from shared.storage.s3 import S3BlobStore  # the S3 client (~7 MB) only where S3 is configured

        secret = getattr(settings, "s3_secret_key", None)
        if secret is not None and hasattr(secret, "get_secret_value"):
            secret = secret.get_secret_value()
        return S3BlobStore(
            endpoint,
            bucket=getattr(settings, "s3_bucket", None) or "quorum",
            access_key=getattr(settings, "s3_access_key", None),
            secret_key=secret,
            secure=getattr(settings, "s3_secure", None),
            region=getattr(settings, "s3_region", None),
            create_bucket=create_bucket,
            part_size=(getattr(settings, "s3_part_mib", None) or 8) * 1024 * 1024,
            parts_in_flight=getattr(settings, "s3_parts_in_flight", None) or 2,
        )
    blob_dir = getattr(settings, "resolved_blob_dir", None) or getattr(settings, "blob_dir", None)
    if blob_dir is None:
        blob_dir = Path(getattr(settings, "data_dir", None) or ".data") / "blobs"
    return LocalBlobStore(blob_dir)
