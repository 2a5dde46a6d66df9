"""TOTP second factor (RFC 6238): enrolment, confirmation, replay-proof verification, recovery codes.

A code is accepted once: the matched time step must be newer than the last accepted one, and that is decided
by one conditional UPDATE on the user row, so two requests racing with the same code cannot both win.
"""

from __future__ import annotations

import base64
import hmac
import io
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
import segno
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.identity.deps import Identity
from services.api.identity.models import Organization, RecoveryCode, User

STEP = 30
DIGITS = 6
WINDOW = 1  # one step either side for clock drift
RECOVERY_CODES = 10
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def _aad(user: User, pending: bool = False) -> str:
    return f"user:{user.id}:totp" + (":pending" if pending else "")


@dataclass
class Enrolment:
    secret: str
    provisioning_uri: str
    qr_svg: str  # data: URI
    qr_png: str  # data: URI


async def start_enrolment(identity: Identity, session: AsyncSession, user: User) -> Enrolment:
    org = await session.get(Organization, user.org_id)
    secret = pyotp.random_base32(32)
    user.totp_pending_sealed = identity.keyring.seal(secret, _aad(user, pending=True))
    await session.flush()
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=user.email, issuer_name=f"{identity.settings.totp_issuer} ({org.slug})" if org else
        identity.settings.totp_issuer)
    qr = segno.make(uri, error="m")
    svg, png = io.BytesIO(), io.BytesIO()
    qr.save(svg, kind="svg", scale=4)
    qr.save(png, kind="png", scale=4)
    return Enrolment(secret=secret, provisioning_uri=uri,
                     qr_svg="data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode(),
                     qr_png="data:image/png;base64," + base64.b64encode(png.getvalue()).decode())


def _matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    if not isinstance(code, str) or len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = int((now if now is not None else time.time()) // STEP)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):  # check all steps: no early exit
            found = step
    return found


async def _claim_step(session: AsyncSession, user: User, step: int) -> bool:
    """Atomically: accept `step` only if it is newer than every step accepted before."""
    won = await session.execute(
        sa.update(User).where(User.id == user.id,
                              sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step).returning(User.id))
    return won.first() is not None


async def confirm_enrolment(identity: Identity, session: AsyncSession, user: User, code: str) -> list[str] | None:
    """Activate the pending secret if `code` matches it; returns the fresh recovery codes (shown once)."""
    if not user.totp_pending_sealed:
        return None
    secret = identity.keyring.unseal(user.totp_pending_sealed, _aad(user, pending=True)).decode()
    step = _matching_step(secret, code)
    if step is None:
        return None
    user.totp_secret_sealed = identity.keyring.seal(secret, _aad(user))
    user.totp_pending_sealed = None
    user.totp_enabled_at = datetime.now(UTC)
    user.totp_last_step = None
    await session.flush()
    if not await _claim_step(session, user, step):
        return None
    return await replace_recovery_codes(identity, session, user)


async def verify_code(identity: Identity, session: AsyncSession, user: User, code: str) -> bool:
    if not user.totp_active:
        return False
    secret = identity.keyring.unseal(user.totp_secret_sealed, _aad(user)).decode()
    step = _matching_step(secret, code)
    if step is None:
        return False
    return await _claim_step(session, user, step)


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def _normalise(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


async def replace_recovery_codes(identity: Identity, session: AsyncSession, user: User) -> list[str]:
    await session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        code = _new_recovery_code()
        plain = _normalise(code)
        # The first group finds the row; only the other 12 characters (~60 bits) are the verified secret.
        session.add(RecoveryCode(user_id=user.id, lookup=plain[:4], code_hash=await identity.hasher.hash(plain[4:])))
        codes.append(code)
    await session.flush()
    return codes


async def use_recovery_code(identity: Identity, session: AsyncSession, user: User, code: str) -> bool:
    plain = _normalise(code) if isinstance(code, str) else ""
    if len(plain) != 16:
        await identity.hasher.verify(None, plain)
        return False
    row = (await session.execute(sa.select(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.lookup == plain[:4], RecoveryCode.used_at.is_(None)))).scalar()
    if not await identity.hasher.verify(row.code_hash if row else None, plain[4:]):
        return False
    spent = await session.execute(sa.update(RecoveryCode)
                                  .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                                  .values(used_at=datetime.now(UTC)).returning(RecoveryCode.id))
    return spent.first() is not None


async def remaining_recovery_codes(session: AsyncSession, user: User) -> int:
    return (await session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)
                                 .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))) or 0


async def clear_totp(session: AsyncSession, user: User) -> None:
    user.totp_secret_sealed = None
    user.totp_pending_sealed = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    await session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    await session.flush()
