"""The one configuration object. Every setting is `QUORUM_<NAME>` in the environment or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["api", "worker", "consensus"]
SERVICES: tuple[ServiceName, ...] = ("api", "worker", "consensus")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    log_level: str = "INFO"
    gc_freeze_at_startup: bool = True  # objects alive after startup leave the garbage collector's full passes
    data_dir: Path = Path(".data")

    # Infrastructure. Empty means "start an embedded one" for `quorum up`.
    database_url: str | None = None
    redis_url: str | None = None
    stream_prefix: str = "quorum"

    # Object storage: no endpoint means a local directory (the embedded default).
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "quorum"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_part_mib: int = Field(8, ge=5, le=5 * 1024)  # multipart part size (S3: 5 MiB to 5 GiB, 10,000 parts)
    s3_parts_in_flight: int = Field(2, ge=1, le=64)  # parts of one upload uploading while the next one fills
    blob_dir: Path | None = None

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None
    migrate_on_start: bool | None = None  # default: on in development, off in production

    # Events
    outbox_poll_interval: float = 0.5
    consumer_block_ms: int = 1000
    consumer_reclaim_idle_ms: int = 30_000
    consumer_max_deliveries: int = 5
    consumer_batch: int = 100

    # Identity
    jwt_issuer: str = "quorum"
    jwt_audience: str = "quorum-api"
    access_token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 14 * 24 * 3600
    jwks_url: str | None = None  # other services fetch the api's JWKS here; default derives from public_base_url
    jwks_cache_seconds: int = 300  # how long a fetched JWKS is trusted before refetching
    jwks_refetch_cooldown_seconds: float = 10.0  # an unknown kid refetches at most this often (kid-flood guard)
    jwt_leeway_seconds: int = 30
    mfa_ticket_ttl_seconds: int = 300
    worker_token_max_ttl_days: int = 90
    signing_key_cache_seconds: float = 30.0
    # argon2id for passwords and recovery codes (OWASP: m=46 MiB, t=1, p=1); tests lower the cost.
    argon2_time_cost: int = 1
    argon2_memory_kib: int = 47_104
    argon2_parallelism: int = 1
    password_min_length: int = 12
    # Throttling of authentication (Redis, shared by replicas).
    auth_rate_limit_per_minute: int = 30  # requests per IP per auth endpoint
    login_max_failures: int = 5  # per account within the window, then locked
    login_failure_window_seconds: int = 900
    login_lockout_seconds: int = 900
    ip_max_failures: int = 50  # failed attempts per IP within the window, then 429
    totp_issuer: str = "Quorum"

    # Key ring for envelope encryption and sealed secrets: "1:<base64>,2:<base64>" (newest active).
    keyring: SecretStr | None = None
    keyring_file: Path | None = None

    # Ingest
    max_upload_bytes: int = 512 * 1024 * 1024
    import_workers: int = 0  # processes for redaction/encryption; 0 = one per CPU core
    import_workers_at_startup: bool = True  # start them with the server, not at the first import
    import_chunk_rows: int = 1000  # CSV and non-UTF-8 files: rows per worker chunk and per committed transaction
    import_block_bytes: int = 1024 * 1024  # JSON and JSON Lines: bytes per worker block and committed transaction
    import_block_rows: int = 4000  # ... and about this many rows at most, estimated (files of small rows: memory)
    import_commit_connections: int = 2  # chunks of one import committing at once (their COPYs overlap)
    import_tasks_per_data_key: int = 64  # imported tasks sharing one data key (erasing one re-keys the others)
    import_max_inflight_chunks: int = 0  # 0 = workers + 1 (each worker busy, one chunk committing)
    import_lease_seconds: int = 30  # a replica that stops renewing loses its running imports to another
    import_resume_interval: float = 5.0  # how often each replica looks for abandoned imports
    import_max_stored_errors: int = 1000  # per operation; counts stay exact beyond it
    import_max_compression_ratio: int = 100  # gzip bodies inflating more than this are refused (bomb)

    # Media (upload, by-reference import, access). Images are held whole while their metadata is stripped.
    max_media_bytes: int = 1024 * 1024 * 1024
    max_image_bytes: int = 64 * 1024 * 1024
    media_link_ttl_seconds: int = 300  # signed links: default lifetime
    media_link_max_ttl_seconds: int = 3600
    archive_max_members: int = 10_000
    archive_max_total_bytes: int = 2 * 1024 * 1024 * 1024
    archive_max_ratio: float = 100.0  # uncompressed:compressed, per member
    media_import_max_objects: int = 1000  # per by-reference import call
    media_import_buckets: list[str] = []  # buckets media may be imported from; empty: any but Quorum's own

    # Fields that are secrets: never printed, never logged.
    secret_fields: frozenset[str] = Field(
        default=frozenset({"s3_secret_key", "keyring", "database_url", "redis_url"}), exclude=True
    )

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def resolved_keyring_file(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.environment != "production"

    def stream(self, name: str) -> str:
        return f"{self.stream_prefix}:{name}"

    def redacted(self) -> dict[str, object]:
        """Settings safe to print: secrets and credentials in URLs are hidden."""
        shown: dict[str, object] = {}
        for name, value in self.model_dump(exclude={"secret_fields"}).items():
            if name in self.secret_fields and value is not None:
                shown[name] = _hide_credentials(str(value)) if name.endswith("_url") else "********"
            else:
                shown[name] = value
        return shown


def _hide_credentials(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
