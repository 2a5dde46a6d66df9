"""Building blocks for identity tests: a running stack, seeded organisations, users of every role, logins."""

from __future__ import annotations

import secrets
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from services.api.identity import service
from services.api.identity.deps import identity_of, unit_of_work
from services.api.identity.models import ProjectMembership
from services.api.projects.models import Project
from shared.config import Settings
from tests.conftest import running

PASSWORD = "correct horse battery staple"
FAST = dict(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1, jwks_refetch_cooldown_seconds=0.0,
            auth_rate_limit_per_minute=1000, ip_max_failures=1000)


def fast_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={**FAST, **overrides})


@dataclass
class Stack:
    api: httpx.AsyncClient
    api_app: Any
    worker: httpx.AsyncClient | None = None
    consensus: httpx.AsyncClient | None = None
    apps: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self):  # noqa: ANN201
        return identity_of(self.api_app.state.ctx)


@asynccontextmanager
async def stack(settings: Settings, *, services: tuple[str, ...] = ("api",)):  # noqa: ANN201
    from services.api.app import create_app as api_app

    async with AsyncExitStack() as exits:
        app = api_app(settings)
        api = await exits.enter_async_context(running(app))
        result = Stack(api=api, api_app=app, apps={"api": app})
        if "worker" in services:
            from services.worker.app import create_app as worker_app

            result.apps["worker"] = worker_app(settings)
            result.worker = await exits.enter_async_context(running(result.apps["worker"]))
        if "consensus" in services:
            from services.consensus.app import create_app as consensus_app

            result.apps["consensus"] = consensus_app(settings)
            result.consensus = await exits.enter_async_context(running(result.apps["consensus"]))
        yield result


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Person:
    id: uuid.UUID
    email: str
    org_id: uuid.UUID
    roles: list[str]
    password: str | None = PASSWORD
    totp_secret: str | None = None
    recovery_codes: list[str] = field(default_factory=list)
    access_token: str | None = None
    refresh_token: str | None = None


@dataclass
class World:
    """Org A (data owner) with a project and a user per role; vendor org V granted that project; org B."""

    org_a: uuid.UUID
    org_b: uuid.UUID
    vendor: uuid.UUID
    vendor_slug: str
    project: uuid.UUID
    other_project: uuid.UUID  # in org A, not granted, no memberships
    project_b: uuid.UUID
    people: dict[str, Person]
    grant_id: uuid.UUID | None = None
    worker_token: str | None = None
    worker_token_id: uuid.UUID | None = None


async def make_org(identity, kind: str = "data_owner", *, require_totp: bool = False) -> tuple[uuid.UUID, str]:  # noqa: ANN001
    slug = unique("org")
    async with unit_of_work(identity) as session:
        org = await service.create_org(session, name=slug, slug=slug, kind=kind, require_totp=require_totp)
        return org.id, slug


async def make_project(identity, org_id: uuid.UUID) -> uuid.UUID:  # noqa: ANN001
    async with unit_of_work(identity) as session:
        project = Project(org_id=org_id, name=unique("project"))
        session.add(project)
        await session.flush()
        return project.id


async def make_user(identity, org_id: uuid.UUID, roles: list[str] | None = None, *,  # noqa: ANN001
                    password: str | None = PASSWORD, project: uuid.UUID | None = None,
                    project_role: str | None = None) -> Person:
    from services.api.identity.models import Organization

    email = f"{unique('user')}@example.test"
    async with unit_of_work(identity) as session:
        org = await session.get(Organization, org_id)
        user = await service.create_user(identity, session, org, email=email, name="", password=password,
                                         roles=roles or [])
        if project is not None and project_role:
            session.add(ProjectMembership(project_id=project, user_id=user.id, org_id=org_id, role=project_role))
        return Person(id=user.id, email=email, org_id=org_id, roles=roles or [], password=password)


async def login(client: httpx.AsyncClient, person: Person) -> Person:
    response = await client.post("/api/v1/auth/login", json={"email": person.email, "password": person.password})
    assert response.status_code == 200, response.text
    body = response.json()
    if body["status"] == "mfa_required":
        response = await client.post("/api/v1/auth/login/totp", json={
            "mfa_ticket": body["mfa_ticket"], "code": pyotp.TOTP(person.totp_secret).now()})
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["status"] == "ok", body
    person.access_token, person.refresh_token = body["access_token"], body["refresh_token"]
    return person


TEXT_SCHEMA: dict[str, Any] = {
    "data": [{"name": "text", "type": "text"}],
    "controls": [{"name": "sentiment", "type": "single_choice", "source": "text", "options": ["pos", "neg"]}],
}


async def api_project(client: httpx.AsyncClient, admin_token: str) -> uuid.UUID:
    """A project made the way users make them (the projects domain owns its invariants, e.g. schema rows)."""
    response = await client.post("/api/v1/projects", headers=bearer(admin_token),
                                 json={"name": unique("project"), "label_schema": TEXT_SCHEMA})
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def build_world(s: Stack, *, scopes: tuple[str, ...] = ("tasks:lease", "annotations:write", "media:read"),
                      ) -> World:
    identity = s.identity
    org_a, _ = await make_org(identity)
    org_b, _ = await make_org(identity)
    vendor, vendor_slug = await make_org(identity, "vendor")
    admin_a = await login(s.api, await make_user(identity, org_a, ["org_admin"]))
    admin_b = await login(s.api, await make_user(identity, org_b, ["org_admin"]))
    project = await api_project(s.api, admin_a.access_token)
    other_project = await api_project(s.api, admin_a.access_token)
    project_b = await api_project(s.api, admin_b.access_token)
    people = {
        "org_admin": admin_a,
        "project_manager": await make_user(identity, org_a, [], project=project, project_role="project_manager"),
        "reviewer": await make_user(identity, org_a, [], project=project, project_role="reviewer"),
        "annotator": await make_user(identity, org_a, [], project=project, project_role="annotator"),
        "auditor": await make_user(identity, org_a, ["auditor"]),
        "vendor_manager": await make_user(identity, vendor, ["vendor_manager"]),
        "vendor_worker": await make_user(identity, vendor, [], password=None),
        "other_org_admin": admin_b,
    }
    for name, person in people.items():
        if person.password and not person.access_token:
            await login(s.api, person)
    world = World(org_a=org_a, org_b=org_b, vendor=vendor, vendor_slug=vendor_slug, project=project,
                  other_project=other_project, project_b=project_b, people=people)
    grant = await s.api.post("/api/v1/grants", headers=bearer(people["org_admin"].access_token), json={
        "vendor": vendor_slug, "project_ids": [str(project)], "roles": ["annotator"], "scopes": list(scopes)})
    assert grant.status_code == 201, grant.text
    world.grant_id = uuid.UUID(grant.json()["id"])
    minted = await s.api.post(f"/api/v1/grants/{world.grant_id}/tokens",
                              headers=bearer(people["vendor_manager"].access_token),
                              json={"worker_id": str(people["vendor_worker"].id), "name": "laptop-1",
                                    "expires_in_days": 7})
    assert minted.status_code == 201, minted.text
    world.worker_token, world.worker_token_id = minted.json()["token"], uuid.UUID(minted.json()["id"])
    return world


async def staged_audit_events(s: Stack, org_id: Any = None) -> list[dict[str, Any]]:
    import json

    import sqlalchemy as sa

    from services.api.db import outbox

    ctx = s.api_app.state.ctx
    async with ctx.session_factory() as session:
        rows = (await session.execute(sa.select(outbox.c.envelope).where(
            outbox.c.type == "audit.recorded", outbox.c.stream == ctx.stream).order_by(outbox.c.seq))).all()
    found = []
    for (raw,) in rows:
        envelope = json.loads(raw)
        if org_id is None or envelope["payload"].get("org_id") == str(org_id):
            found.append(envelope["payload"])
    return found
