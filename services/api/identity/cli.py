"""`quorum users create-admin` and `quorum signing-keys list|rotate|retire`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import Any


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="manage users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    admin = users_sub.add_parser("create-admin", help="create an organisation (if new) and its first admin")
    admin.add_argument("--org", required=True, help="organisation slug, e.g. acme")
    admin.add_argument("--org-name", help="display name when the organisation is created")
    admin.add_argument("--org-kind", choices=["data_owner", "vendor"], default="data_owner")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="")
    admin.add_argument("--role", action="append", dest="roles",
                       help="organisation role (default org_admin; repeat for several, e.g. vendor_manager)")
    admin.add_argument("--password-stdin", action="store_true",
                       help="read the password from stdin (else QUORUM_ADMIN_PASSWORD, else a prompt)")
    admin.set_defaults(func=cmd_create_admin)

    keys = sub.add_parser("signing-keys", help="token signing keys (ES256, published in the JWKS)")
    keys.add_argument("action", choices=["list", "rotate", "retire"])
    keys.add_argument("--kid", help="the key to retire")
    keys.set_defaults(func=cmd_signing_keys)


def _settings():  # noqa: ANN202
    from shared.config import get_settings

    settings = get_settings()
    if not settings.database_url:
        print("this command needs QUORUM_DATABASE_URL", file=sys.stderr)
        raise SystemExit(2)
    return settings


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("QUORUM_ADMIN_PASSWORD"):
        return os.environ["QUORUM_ADMIN_PASSWORD"]
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("passwords differ", file=sys.stderr)
        raise SystemExit(2)
    return first


async def create_admin(settings: Any, *, org_slug: str, org_name: str | None, org_kind: str, email: str, name: str,
                       password: str, roles: list[str]) -> dict[str, str]:
    import sqlalchemy as sa

    from services.api.identity import service
    from services.api.identity.audit import audit
    from services.api.identity.deps import Identity
    from services.api.identity.models import Organization
    from services.api.identity.passwords import Hasher
    from shared.auth.principal import Role
    from shared.crypto.keyring import keyring_from_settings
    from shared.db import create_engine, create_session_factory
    from shared.redis import create_redis

    engine = create_engine(settings.database_url, pool_size=1, application_name="quorum-cli")
    redis = create_redis(settings.redis_url) if settings.redis_url else None
    try:
        class _Ctx:  # what audit/publish need from a service context
            pass

        ctx = _Ctx()
        ctx.settings, ctx.redis, ctx.session_factory = settings, redis, create_session_factory(engine)
        identity = Identity(ctx=ctx, hasher=Hasher.from_settings(settings), keyring=keyring_from_settings(settings),
                            keys=None, revocations=None, limiter=None)  # type: ignore[arg-type]
        allowed = {Role.ORG_ADMIN, Role.VENDOR_MANAGER} if org_kind == "vendor" else {
            Role.ORG_ADMIN, Role.PROJECT_MANAGER, Role.AUDITOR}
        bad = sorted(set(roles) - allowed)
        if bad:
            raise SystemExit(f"role(s) {', '.join(bad)} do not fit a {org_kind} organisation")
        async with ctx.session_factory() as session, session.begin():
            org = (await session.execute(sa.select(Organization).where(Organization.slug == org_slug))).scalar()
            if org is None:
                org = await service.create_org(session, name=org_name or org_slug, slug=org_slug, kind=org_kind)
            elif org.kind != org_kind:
                raise SystemExit(f"organisation {org_slug!r} exists and is a {org.kind} organisation")
            user = await service.create_user(identity, session, org, email=email, name=name, password=password,
                                             roles=roles)
            await audit(session, identity, None, action="user.create", outcome="success", resource_type="user",
                        resource_id=user.id, org_id=org.id, reason="cli", details={"roles": roles})
        return {"org_id": str(org.id), "org": org.slug, "user_id": str(user.id), "email": user.email,
                "roles": ",".join(roles)}
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def cmd_create_admin(args: argparse.Namespace) -> int:
    from shared.errors import ProblemError

    settings = _settings()
    password = _read_password(args)
    try:
        result = asyncio.run(create_admin(settings, org_slug=args.org, org_name=args.org_name,
                                          org_kind=args.org_kind, email=args.email, name=args.name,
                                          password=password, roles=args.roles or ["org_admin"]))
    except ProblemError as exc:
        print(f"error: {exc.detail or exc.title}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


async def signing_keys(settings: Any, action: str, kid: str | None) -> list[dict[str, Any]] | dict[str, Any]:
    from services.api.identity.signing import create_signing_key, list_signing_keys, retire_signing_key
    from shared.auth.revocation import RevocationList
    from shared.crypto.keyring import keyring_from_settings
    from shared.db import create_engine, create_session_factory
    from shared.redis import create_redis

    engine = create_engine(settings.database_url, pool_size=1, application_name="quorum-cli")
    factory = create_session_factory(engine)
    try:
        async with factory() as session, session.begin():
            if action == "rotate":
                return {"kid": await create_signing_key(session, keyring_from_settings(settings)),
                        "note": "new tokens are signed with it within signing_key_cache_seconds; old keys verify "
                                "until retired"}
            if action == "retire":
                if not kid:
                    raise SystemExit("--kid is required")
                active = [k for k in await list_signing_keys(session) if k.status == "active"]
                if len(active) <= 1 and any(k.kid == kid for k in active):
                    raise SystemExit("refusing to retire the only active key: rotate first")
                if not await retire_signing_key(session, kid):
                    raise SystemExit(f"no active key {kid!r}")
            keys = [{"kid": k.kid, "status": k.status, "created_at": k.created_at.isoformat(),
                     "retired_at": k.retired_at.isoformat() if k.retired_at else None}
                    for k in await list_signing_keys(session)]
        if action == "retire" and settings.redis_url:
            redis = create_redis(settings.redis_url)
            try:
                await RevocationList(redis, settings.stream_prefix).retire_key(kid)
            finally:
                await redis.aclose()
        return keys
    finally:
        await engine.dispose()


def cmd_signing_keys(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(signing_keys(_settings(), args.action, args.kid)), indent=2))
    return 0
