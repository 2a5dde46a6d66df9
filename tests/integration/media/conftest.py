"""A running api app (local or S3 storage), an organisation with a project, and real access tokens."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.api.app import create_app
from services.api.identity.deps import identity_of
from services.api.identity.models import Organization
from services.api.identity.tokens import sign
from services.api.keys.service import keyring, new_project_secret
from services.api.projects.models import Project
from shared.app import ServiceContext
from shared.auth.tokens import ACCESS_TYP
from tests.conftest import make_settings, running
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY


@dataclass
class MediaEnv:
    client: httpx.AsyncClient
    ctx: ServiceContext
    org_id: str
    project_id: str
    other_org_id: str
    other_project_id: str

    @property
    def settings(self):  # noqa: ANN201
        return self.ctx.settings

    async def token(self, *, roles: tuple[str, ...] = (), proj: dict[str, str] | None = None,
                    org: str | None = None, kind: str = "user", scopes: tuple[str, ...] = (),
                    owner: str | None = None, sub: str | None = None, vendor_allowed: bool = True) -> str:
        claims: dict[str, Any] = {"sub": sub or str(uuid.uuid4()), "kind": kind, "org": org or self.org_id,
                                  "roles": list(roles), "proj": proj or {}}
        if kind == "worker":
            jti, vendor, grant = await self._worker_records(owner or self.org_id, proj or {}, scopes,
                                                            vendor_allowed)
            claims.update(jti=jti, org=vendor, scopes=list(scopes), vendor=vendor, grant=grant,
                          owner=owner or self.org_id)
        else:
            claims.update(sid=str(uuid.uuid4()), ver=0)
        token, _ = await sign(identity_of(self.ctx), claims, typ=ACCESS_TYP, ttl=300)
        return token

    async def _worker_records(self, owner: str, proj: dict[str, str], scopes: tuple[str, ...],
                              vendor_allowed: bool = True) -> tuple[str, str, str]:
        """A vendor organisation, its worker, a grant and a worker token row: what identity checks."""
        from datetime import UTC, datetime, timedelta

        from services.api.identity.models import User, VendorGrant, WorkerToken

        async with self.ctx.session_factory() as session, session.begin():
            vendor = Organization(id=uuid.uuid4(), name="Vendor", slug=f"vendor-{secrets.token_hex(6)}",
                                  kind="vendor")
            session.add(vendor)
            await session.flush()
            worker = User(id=uuid.uuid4(), org_id=vendor.id, email=f"w-{secrets.token_hex(6)}@vendor.test",
                          name="Worker", roles=[])
            grant = VendorGrant(id=uuid.uuid4(), owner_org_id=uuid.UUID(owner), vendor_org_id=vendor.id,
                                roles=["annotator"], scopes=list(scopes))
            session.add_all([worker, grant])
            await session.flush()
            token = WorkerToken(id=uuid.uuid4(), grant_id=grant.id, vendor_org_id=vendor.id, worker_id=worker.id,
                                name="test", token_hash=secrets.token_hex(32),
                                project_ids=[uuid.UUID(p) for p in proj], scopes=list(scopes),
                                role="annotator", expires_at=datetime.now(UTC) + timedelta(hours=1))
            session.add(token)
            for project_id in proj if vendor_allowed else ():
                project = await session.get(Project, uuid.UUID(project_id))
                project.allowed_vendor_ids = [*(project.allowed_vendor_ids or []), str(vendor.id)]
        return str(token.id), str(vendor.id), str(grant.id)

    async def headers(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(**kw)}"}

    async def manager(self) -> dict[str, str]:
        return await self.headers(roles=("project_manager",))

    async def upload(self, data: bytes, filename: str = "file.bin", content_type: str | None = None,
                     headers: dict[str, str] | None = None, project_id: str | None = None,
                     params: dict[str, str] | None = None) -> httpx.Response:
        files = {"file": (filename, data, content_type) if content_type else (filename, data)}
        return await self.client.post(f"/api/v1/projects/{project_id or self.project_id}/media", files=files,
                                      headers=headers or await self.manager(), params=params)

    async def events(self, type: str, **match: Any) -> list[dict[str, Any]]:
        """Payloads of `type` staged in the outbox whose fields equal `match` (the suite shares one DB)."""
        import json

        from services.api.db import outbox

        async with self.ctx.session_factory() as session:
            rows = (await session.execute(sa.select(outbox.c.envelope).where(outbox.c.type == type)
                                          .order_by(outbox.c.seq))).scalars().all()
        payloads = [json.loads(row)["payload"] for row in rows]
        return [p for p in payloads if all(p.get(k) == v for k, v in match.items())]


async def _seed(ctx: ServiceContext) -> tuple[str, str, str, str]:
    ids = []
    async with ctx.session_factory() as session, session.begin():
        for _ in range(2):
            org = Organization(id=uuid.uuid4(), name="Media Org", slug=f"media-{secrets.token_hex(6)}")
            session.add(org)
            await session.flush()
            pid = uuid.uuid4()
            session.add(Project(id=pid, org_id=org.id, name="Media project",
                                secret_sealed=new_project_secret(keyring(ctx), pid)))
            ids.append((str(org.id), str(pid)))
    return ids[0][0], ids[0][1], ids[1][0], ids[1][1]


async def _env(settings) -> AsyncIterator[MediaEnv]:  # noqa: ANN001
    app = create_app(settings, run_background=False)
    async with running(app) as client:
        ctx: ServiceContext = app.state.ctx
        ctx.extras["key_source"] = identity_of(ctx).keys  # in-process JWKS: the api verifies its own tokens
        org, project, other_org, other_project = await _seed(ctx)
        yield MediaEnv(client, ctx, org, project, other_org, other_project)


@pytest.fixture
async def env(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[MediaEnv]:
    """Local-directory storage."""
    async for value in _env(_settings(infrastructure, tmp_path)):
        yield value


@pytest.fixture
async def s3_env(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[MediaEnv]:
    """S3 storage (moto over HTTP), a bucket of its own."""
    settings = _settings(infrastructure, tmp_path, s3_endpoint=infrastructure["s3_endpoint"],
                         s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY,
                         s3_bucket=f"quorum-{secrets.token_hex(4)}")
    async for value in _env(settings):
        yield value


def _settings(infra: dict[str, str], tmp: Path, **overrides: Any):  # noqa: ANN202
    values = dict(argon2_memory_kib=1024, max_media_bytes=2 * 1024 * 1024, max_image_bytes=1024 * 1024,
                  archive_max_ratio=50.0)
    values.update(overrides)
    return make_settings(infra, tmp, **values)


@pytest.fixture(params=["local", "s3"])
async def any_env(request: pytest.FixtureRequest, infrastructure: dict[str, str],
                  tmp_path: Path) -> AsyncIterator[MediaEnv]:
    """Both storage backends, one test run each."""
    overrides: dict[str, Any] = {}
    if request.param == "s3":
        overrides = dict(s3_endpoint=infrastructure["s3_endpoint"], s3_access_key=S3_ACCESS_KEY,
                         s3_secret_key=S3_SECRET_KEY, s3_bucket=f"quorum-{secrets.token_hex(4)}")
    async for value in _env(_settings(infrastructure, tmp_path, **overrides)):
        yield value
