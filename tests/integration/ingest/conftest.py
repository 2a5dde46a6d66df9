"""A running api app, two organisations, real access tokens, and helpers to import and wait."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.identity.deps import identity_of
from services.api.identity.models import Organization
from services.api.identity.tokens import sign
from shared.app import ServiceContext
from shared.auth.tokens import ACCESS_TYP
from tests.conftest import make_settings, running, wait_until

TEXT_SCHEMA: dict[str, Any] = {
    "data": [{"name": "text", "type": "text"}],
    "controls": [
        {"name": "sentiment", "type": "single_choice", "source": "text", "options": ["pos", "neg", "neutral"]},
        {"name": "entities", "type": "spans", "source": "text", "labels": ["PER", "ORG"], "required": False},
        {"name": "summary", "type": "text", "source": "text", "required": False},
    ],
}


@dataclass
class IngestEnv:
    client: httpx.AsyncClient
    ctx: ServiceContext
    org_id: str
    other_org_id: str

    async def token(self, *, roles: tuple[str, ...] = (), proj: dict[str, str] | None = None,
                    org: str | None = None, kind: str = "user", scopes: tuple[str, ...] = (),
                    vendor: str | None = None) -> str:
        claims: dict[str, Any] = {"sub": str(uuid.uuid4()), "kind": kind, "org": org or self.org_id,
                                  "roles": list(roles), "proj": proj or {}}
        if kind == "worker":
            claims.update(scopes=list(scopes), vendor=vendor or str(uuid.uuid4()), grant=str(uuid.uuid4()),
                          owner=self.org_id)
        else:
            claims.update(sid=str(uuid.uuid4()), ver=0)
        token, _ = await sign(identity_of(self.ctx), claims, typ=ACCESS_TYP, ttl=300)
        return token

    async def headers(self, **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(**kw)}"}

    async def manager(self, org: str | None = None) -> dict[str, str]:
        return await self.headers(roles=("project_manager",), org=org)

    async def admin(self) -> dict[str, str]:
        return await self.headers(roles=("org_admin",))

    async def annotator(self, project_id: str) -> dict[str, str]:
        return await self.headers(proj={project_id: "annotator"})

    async def create_project(self, schema: dict[str, Any] | None = None, **settings: Any) -> str:
        body = {"name": f"p-{secrets.token_hex(3)}", "label_schema": schema or TEXT_SCHEMA, **settings}
        r = await self.client.post("/api/v1/projects", json=body, headers=await self.manager())
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def start_import(self, project_id: str, body: bytes, content_type: str = "application/x-ndjson",
                           headers: dict[str, str] | None = None, params: dict[str, str] | None = None
                           ) -> httpx.Response:
        h = {"Content-Type": content_type, **await self.manager()}
        h.update(headers or {})
        return await self.client.post(f"/api/v1/projects/{project_id}/imports", content=body, headers=h,
                                      params=params)

    async def wait_import(self, op_id: str, timeout: float = 30.0) -> dict[str, Any]:
        headers = await self.manager()

        async def done() -> dict[str, Any] | None:
            r = await self.client.get(f"/api/v1/imports/{op_id}", headers=headers,
                                      params={"errors_limit": 1000})
            assert r.status_code == 200, r.text
            body = r.json()
            return body if body["status"] in ("succeeded", "failed") else None

        return await wait_until(done, timeout=timeout, interval=0.05)

    async def run_import(self, project_id: str, body: bytes, content_type: str = "application/x-ndjson",
                         **kw: Any) -> dict[str, Any]:
        r = await self.start_import(project_id, body, content_type, **kw)
        assert r.status_code == 202, r.text
        return await self.wait_import(r.json()["id"])


async def _seed_orgs(ctx: ServiceContext) -> tuple[str, str]:
    ids = []
    async with ctx.session_factory() as session, session.begin():
        for _ in range(2):
            org = Organization(id=uuid.uuid4(), name="Ingest Org", slug=f"ingest-{secrets.token_hex(6)}")
            session.add(org)
            ids.append(str(org.id))
    return ids[0], ids[1]


@pytest.fixture
async def ingest(infrastructure: dict[str, str], tmp_path: Path) -> AsyncIterator[IngestEnv]:
    async for env in ingest_env(infrastructure, tmp_path, import_chunk_rows=50, import_block_bytes=4096,
                                max_upload_bytes=256 * 1024):
        yield env


async def ingest_env(infrastructure: dict[str, str], tmp_path: Path, **settings: Any) -> AsyncIterator[IngestEnv]:
    """A running api app with `settings` over the ingest tests' defaults, and two organisations."""
    app = create_app(make_settings(infrastructure, tmp_path, **{
        "argon2_memory_kib": 1024, "import_workers": 2, "import_resume_interval": 3600, **settings}),
        run_background=False)
    async with running(app) as client:
        ctx: ServiceContext = app.state.ctx
        ctx.extras["key_source"] = identity_of(ctx).keys
        org, other = await _seed_orgs(ctx)
        yield IngestEnv(client, ctx, org, other)
