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

    # Key ring for envelope encryption and sealed secrets: "1:<base64>,2:<base64>" (newest active).
    keyring: SecretStr | None = None
    keyring_file: Path | None = None

    # Ingest
    max_upload_bytes: int = 512 * 1024 * 1024

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
