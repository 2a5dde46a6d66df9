"""Sealing small secrets at rest (TOTP seeds, webhook secrets) under the key ring.

Token: `qs1.<kek version>.<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>` — text, so it fits any column.
The caller's `aad` names what the secret belongs to (e.g. "user:42:totp"); a token copied onto another
row fails to open. The version tag keeps old tokens readable after rotation; `reseal` moves them to the
active version so the old KEK can be retired.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.crypto.errors import DecryptionError
from shared.crypto.keyring import KeyRing

PREFIX = "qs1"
PURPOSE = b"quorum/seal/v1"
NONCE_BYTES = 12
MAX_SECRET_BYTES = 64 * 1024


def seal(keyring: KeyRing, plaintext: bytes | str, aad: bytes | str) -> str:
    data = plaintext.encode("utf-8") if isinstance(plaintext, str) else bytes(plaintext)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"sealing is for small secrets (≤ {MAX_SECRET_BYTES} bytes); use envelope encryption")
    version = keyring.active_version
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(keyring.derive(version, PURPOSE)).encrypt(nonce, data, _aad(version, aad))
    body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
    return f"{PREFIX}.{version}.{body}"


def unseal(keyring: KeyRing, token: str | bytes, aad: bytes | str) -> bytes:
    version, blob = _parse(token)
    key = keyring.derive(version, PURPOSE)  # KeyVersionUnavailable (a DecryptionError) if retired
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(version, aad))
    except InvalidTag:
        raise DecryptionError("sealed secret failed authentication (tampered, wrong context or key)") from None


def reseal(keyring: KeyRing, token: str | bytes, aad: bytes | str) -> str:
    """The same secret sealed under the active version (the token itself if it already is)."""
    version, _ = _parse(token)
    if version == keyring.active_version:
        unseal(keyring, token, aad)  # still prove it opens: a rotation run must not bless garbage
        return token.decode("ascii") if isinstance(token, bytes) else token
    return seal(keyring, unseal(keyring, token, aad), aad)


def sealed_version(token: str | bytes) -> int:
    """The KEK version a token was sealed under (to find tokens that still need `reseal`)."""
    return _parse(token)[0]


def _aad(version: int, aad: bytes | str) -> bytes:
    context = aad.encode("utf-8") if isinstance(aad, str) else bytes(aad)
    return f"{PREFIX}.{version}.".encode("ascii") + context


def _parse(token: str | bytes) -> tuple[int, bytes]:
    try:
        text = token.decode("ascii") if isinstance(token, bytes) else token
        prefix, version_text, body = text.split(".")
        if prefix != PREFIX or not version_text.isdigit():
            raise ValueError
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, UnicodeDecodeError, binascii.Error, AttributeError):
        raise DecryptionError("not a sealed secret token") from None
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionError("sealed secret token is truncated")
    return int(version_text), blob
