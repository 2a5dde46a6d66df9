"""Versioned key-encryption keys (KEKs).

A KEK never encrypts data directly: it wraps data keys and seals small secrets, each through its own
HKDF-derived subkey (domain separation). The newest version is active for new work; older versions stay
only to open what they wrapped until `rewrap`/`reseal` moved it, then they can be retired.

Sources:
- a secret string, `QUORUM_KEYRING="1:<base64 32 bytes>,2:<base64 32 bytes>"` (highest version active);
  read-only — rotate by adding a version to the secret.
- a JSON key file (embedded default `.data/keyring.json`), created on first use with mode 0600;
  `rotate()` and `retire()` rewrite it atomically.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.crypto.errors import KeyRingError, KeyVersionUnavailable

KEK_BYTES = 32
FILE_FORMAT = "quorum-keyring/1"


class KeyRing:
    def __init__(self, keys: Mapping[int, bytes], *, path: Path | None = None,
                 retired: set[int] | frozenset[int] = frozenset(),
                 created_at: Mapping[int, str] | None = None) -> None:
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        for version, key in keys.items():
            if not isinstance(version, int) or version < 1:
                raise KeyRingError(f"key versions are positive integers, got {version!r}")
            if len(key) != KEK_BYTES:
                raise KeyRingError(f"key version {version} must be {KEK_BYTES} bytes, got {len(key)}")
        self._keys: dict[int, bytes] = dict(keys)
        self._retired: set[int] = set(retired)
        self._created_at: dict[int, str] = dict(created_at or {})
        self._derived: dict[tuple[int, bytes], bytes] = {}
        self._path = path
        self._lock = threading.Lock()

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh in-memory ring with one version (tests, throwaway use)."""
        return cls({1: secrets.token_bytes(KEK_BYTES)})

    @classmethod
    def from_secret(cls, secret: Any) -> KeyRing:
        """Parse `"1:<b64>,2:<b64>"` (a str or pydantic `SecretStr`)."""
        if hasattr(secret, "get_secret_value"):
            secret = secret.get_secret_value()
        if not isinstance(secret, str) or not secret.strip():
            raise KeyRingError("key ring secret is empty")
        keys: dict[int, bytes] = {}
        for position, entry in enumerate(secret.split(","), start=1):
            entry = entry.strip()
            version_text, sep, material = entry.partition(":")
            if not sep or not version_text.strip().isdigit():
                raise KeyRingError(f"key ring entry #{position} must look like '<version>:<base64 key>'")
            version = int(version_text)
            if version in keys:
                raise KeyRingError(f"key ring lists version {version} twice")
            keys[version] = _decode_key(material.strip(), f"version {version}")
        return cls(keys)

    @classmethod
    def load_or_create(cls, path: Path | str) -> KeyRing:
        """Open the JSON key file, creating it (one fresh key, mode 0600) if it does not exist."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            now = _now()
            document = {"format": FILE_FORMAT, "keys": {"1": {"key": _b64(secrets.token_bytes(KEK_BYTES)),
                                                              "created_at": now}}, "retired": []}
            _write_file(path, document, exclusive=True)  # if another process won the race, load theirs
        return cls._load_file(path)

    @classmethod
    def _load_file(cls, path: Path) -> KeyRing:
        keys, retired, created = _read_file(path)
        return cls(keys, path=path, retired=retired, created_at=created)

    @staticmethod
    def generate_secret(versions: int = 1) -> str:
        """A new `QUORUM_KEYRING` value (for operators; print it once, store it in a secret manager)."""
        return ",".join(f"{v}:{_b64(secrets.token_bytes(KEK_BYTES))}" for v in range(1, versions + 1))

    # -- inspection ---------------------------------------------------------------------------------

    @property
    def active_version(self) -> int:
        return max(self._keys)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    @property
    def path(self) -> Path | None:
        return self._path

    def __repr__(self) -> str:
        source = f"file {str(self._path)!r}" if self._path else "secret"
        return f"KeyRing(versions={list(self.versions)}, active={self.active_version}, source={source})"

    __str__ = __repr__

    def __reduce__(self):  # keys do not travel by pickle (task queues, caches, crash dumps)
        raise TypeError("KeyRing cannot be pickled")

    def derive(self, version: int, purpose: bytes) -> bytes:
        """The 256-bit subkey of KEK `version` for `purpose` (e.g. b"quorum/wrap/v1")."""
        cached = self._derived.get((version, purpose))
        if cached is not None:
            return cached
        kek = self._key(version)
        subkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(kek)
        self._derived[(version, purpose)] = subkey
        return subkey

    def _key(self, version: int) -> bytes:
        key = self._keys.get(version)
        if key is None and self._path is not None and version not in self._retired:
            self.reload()  # another process (e.g. `quorum keys rotate`) may have added it
            key = self._keys.get(version)
        if key is None:
            raise KeyVersionUnavailable(version)
        return key

    # -- lifecycle (file-backed only) ---------------------------------------------------------------

    def reload(self) -> None:
        if self._path is None:
            return
        with self._lock:
            keys, retired, created = _read_file(self._path)
            self._keys, self._retired, self._created_at = keys, retired, created
            self._derived = {k: v for k, v in self._derived.items() if k[0] in keys}

    def rotate(self) -> int:
        """Add a new, active key version and persist it; returns the new version."""
        path = self._require_file("rotate")
        with self._lock, _file_lock(path):
            keys, retired, created = _read_file(path)
            version = max([*keys, *retired]) + 1
            keys[version] = secrets.token_bytes(KEK_BYTES)
            created[version] = _now()
            _write_file(path, _document(keys, retired, created))
            self._keys, self._retired, self._created_at = keys, retired, created
        return version

    def retire(self, version: int) -> None:
        """Erase KEK `version` for good. Only after everything it wrapped/sealed was re-wrapped/resealed."""
        path = self._require_file("retire")
        with self._lock, _file_lock(path):
            keys, retired, created = _read_file(path)
            if version not in keys:
                raise KeyRingError(f"key version {version} is not in the key ring")
            if version == max(keys):
                raise KeyRingError(f"key version {version} is active; rotate before retiring it")
            del keys[version]
            retired.add(version)
            _write_file(path, _document(keys, retired, created))
            self._keys, self._retired, self._created_at = keys, retired, created
            self._derived = {k: v for k, v in self._derived.items() if k[0] != version}

    def _require_file(self, action: str) -> Path:
        if self._path is None:
            raise KeyRingError(f"cannot {action} a key ring loaded from a secret: change QUORUM_KEYRING "
                               "(add a higher version to rotate, drop a version to retire)")
        return self._path

    # -- sealing small secrets (see shared.crypto.sealing) ------------------------------------------

    def seal(self, plaintext: bytes | str, aad: bytes | str) -> str:
        from shared.crypto.sealing import seal

        return seal(self, plaintext, aad)

    def unseal(self, token: str | bytes, aad: bytes | str) -> bytes:
        from shared.crypto.sealing import unseal

        return unseal(self, token, aad)

    def reseal(self, token: str | bytes, aad: bytes | str) -> str:
        from shared.crypto.sealing import reseal

        return reseal(self, token, aad)


def keyring_from_settings(settings: Any) -> KeyRing:
    """`settings.keyring` (secret string) if set, else the key file (`resolved_keyring_file`,
    `keyring_file`, or `<data_dir>/keyring.json`), created on first use."""
    secret = getattr(settings, "keyring", None)
    if secret is not None and hasattr(secret, "get_secret_value"):
        secret = secret.get_secret_value()
    if secret:
        return KeyRing.from_secret(secret)
    path = getattr(settings, "resolved_keyring_file", None) or getattr(settings, "keyring_file", None)
    if path is None:
        path = Path(getattr(settings, "data_dir", None) or ".data") / "keyring.json"
    return KeyRing.load_or_create(path)


@contextlib.contextmanager
def _file_lock(path: Path):
    """Serialise rotate/retire across processes (read-modify-write of the key file)."""
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _decode_key(material: str, label: str) -> bytes:
    try:
        padded = material + "=" * (-len(material) % 4)
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRingError(f"key {label} is not valid base64") from None
    if len(key) != KEK_BYTES:
        raise KeyRingError(f"key {label} must decode to {KEK_BYTES} bytes, got {len(key)}")
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _document(keys: dict[int, bytes], retired: set[int], created: dict[int, str]) -> dict[str, Any]:
    return {
        "format": FILE_FORMAT,
        "keys": {str(v): {"key": _b64(k), "created_at": created.get(v)} for v, k in sorted(keys.items())},
        "retired": sorted(retired),
    }


def _read_file(path: Path) -> tuple[dict[int, bytes], set[int], dict[int, str]]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KeyRingError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyRingError(f"key file {path} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyRingError(f"key file {path} is not a regular file")
        if mode & 0o077:
            raise KeyRingError(f"key file {path} is accessible by group/others (mode {stat.S_IMODE(mode):o}); "
                               "run `chmod 600` on it")
        raw = handle.read()
    try:
        document = json.loads(raw)
        if document.get("format") != FILE_FORMAT:
            raise KeyRingError(f"key file {path} has unknown format {document.get('format')!r}")
        keys = {int(v): _decode_key(entry["key"], f"version {v} in {path}")
                for v, entry in document["keys"].items()}
        created = {int(v): entry.get("created_at") for v, entry in document["keys"].items()}
        retired = {int(v) for v in document.get("retired", [])}
    except KeyRingError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyRingError(f"key file {path} is malformed") from None
    if not keys:
        raise KeyRingError(f"key file {path} holds no keys")
    return keys, retired, created


def _write_file(path: Path, document: dict[str, Any], *, exclusive: bool = False) -> bool:
    """Write atomically with mode 0600. `exclusive`: only if `path` does not exist (returns False if it did)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # atomic create-if-absent, with complete content
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True
