"""Short-lived signed links to `GET /api/v1/media/{id}`, usable without a bearer token.

The signature is HMAC-SHA256 under a subkey of the key ring (purpose `quorum/media-link/v1`) over the
media id, the expiry, the key version and the subject who minted it. The version travels in the link so
links minted before a rotation keep working until they expire (or the old KEK is retired).
Verification is constant-time, and a link names nothing secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from shared.crypto.errors import KeyVersionUnavailable
from shared.crypto.keyring import KeyRing
from shared.errors import Forbidden

LINK_PURPOSE = b"quorum/media-link/v1"
SIGNATURE_BYTES = 32


class InvalidLink(Forbidden):
    type, title = "invalid-signed-link", "Signed link is not valid"


@dataclass(frozen=True)
class LinkGrant:
    """What a verified link allows: reading one media object until `expires_at`, on behalf of `issued_by`."""

    media_id: str
    expires_at: int
    issued_by: str
    key_version: int


def _message(media_id: str, expires_at: int, key_version: int, issued_by: str) -> bytes:
    return f"quorum-media-link/1|{media_id}|{expires_at}|{key_version}|{issued_by}".encode()


def sign_link(keyring: KeyRing, media_id: str, issued_by: str, ttl_seconds: int,
              *, now: float | None = None) -> dict[str, str]:
    """The query parameters of a signed link (`exp`, `kv`, `by`, `sig`)."""
    expires_at = int((now if now is not None else time.time()) + ttl_seconds)
    version = keyring.active_version
    mac = hmac.new(keyring.derive(version, LINK_PURPOSE), _message(media_id, expires_at, version, issued_by),
                   hashlib.sha256).digest()
    return {"exp": str(expires_at), "kv": str(version), "by": issued_by,
            "sig": base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")}


def link_query(params: dict[str, str]) -> str:
    return urlencode(params)


def verify_link(keyring: KeyRing, media_id: str, params: dict[str, str | None], *,
                now: float | None = None) -> LinkGrant:
    """The grant a link carries, or `InvalidLink` (403) saying why — never which byte was wrong."""
    exp, kv, by, sig = (params.get(k) for k in ("exp", "kv", "by", "sig"))
    if not (exp and kv and by and sig) or not (exp.isascii() and exp.isdigit() and kv.isascii() and kv.isdigit()) \
            or len(exp) > 12 or len(kv) > 9 or len(by) > 200:
        raise InvalidLink("the link is incomplete or malformed")
    try:
        given = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError):
        raise InvalidLink("the link signature is malformed") from None
    expires_at, version = int(exp), int(kv)
    try:
        key = keyring.derive(version, LINK_PURPOSE)
    except KeyVersionUnavailable:
        raise InvalidLink("the link was signed with a retired key") from None
    expected = hmac.new(key, _message(media_id, expires_at, version, by), hashlib.sha256).digest()
    # Compared as text in its canonical encoding: base64 ignores the spare low bits of the last character, so
    # decoded bytes would accept several spellings of one signature (a malleable link).
    canonical = base64.urlsafe_b64encode(expected).rstrip(b"=")
    if len(given) != SIGNATURE_BYTES or not hmac.compare_digest(sig.encode("ascii", "replace"), canonical):
        raise InvalidLink("the link signature does not match")
    if expires_at <= (now if now is not None else time.time()):
        raise InvalidLink("the link has expired", type="signed-link-expired", title="Signed link has expired")
    return LinkGrant(media_id=media_id, expires_at=expires_at, issued_by=by, key_version=version)
