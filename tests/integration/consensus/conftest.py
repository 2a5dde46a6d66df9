"""A running consensus service, real events on the api stream, and access tokens it verifies.

Tokens are ES256 access tokens signed with a key the test owns; the service gets its public key through the
same key-source hook the api uses in-process, so the verifier, revocation check and route gates run for real.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt

from services.consensus.app import create_app
from shared.app import ServiceContext
from shared.auth.keys import StaticKeySource, public_jwk
from shared.auth.tokens import ACCESS_TYP
from shared.events.envelope import Envelope, new_event
from tests.conftest import running, wait_until


@dataclass
class Signer:
    kid: str = field(default_factory=lambda: "test-" + secrets.token_hex(8))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**public_jwk(self.key.public_key()), "kid": self.kid}]}

    def sign(self, settings, claims: dict[str, Any]) -> str:  # noqa: ANN001
        now = int(time.time())
        body = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": now, "nbf": now, "exp": now + 300,
                "jti": secrets.token_hex(16), "typ": "access", **claims}
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return jwt.encode(body, pem, algorithm="ES256", headers={"kid": self.kid, "typ": ACCESS_TYP})


@dataclass
class ConsensusEnv:
    client: httpx.AsyncClient
    ctx: ServiceContext
    signer: Signer
    org_id: str
    project_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def base(self) -> str:
        return f"/api/v1/consensus/projects/{self.project_id}"

    def headers(self, *, roles: tuple[str, ...] = (), proj: dict[str, str] | None = None, org: str | None = None,
                kind: str = "user", **extra: Any) -> dict[str, str]:
        claims = {"sub": str(uuid.uuid4()), "kind": kind, "org": org or self.org_id, "roles": list(roles),
                  "proj": proj or {}, "sid": str(uuid.uuid4()), "ver": 0, **extra}
        return {"Authorization": f"Bearer {self.signer.sign(self.ctx.settings, claims)}"}

    def manager(self) -> dict[str, str]:
        return self.headers(proj={self.project_id: "project_manager"})

    def annotation(self, task: str, annotator: str, value: Any, *, control: str = "label",
                   label_type: str = "single_choice", classes: list | None = None,
                   annotation_id: str | None = None, project_id: str | None = None, **payload: Any) -> Envelope:
        project = project_id or self.project_id
        return new_event("annotation.submitted", {
            "annotation_id": annotation_id or str(uuid.uuid4()), "task_id": task, "project_id": project,
            "annotator_id": annotator, "label_type": label_type, "control": control, "value": value,
            "classes": classes, "submitted_at": datetime.now(UTC).isoformat(), **payload},
            producer="api", org_id=self.org_id, project_id=project)

    async def publish(self, *envelopes: Envelope) -> None:
        """XADD onto the api's stream exactly as its outbox relay does."""
        stream = self.ctx.producer_stream("api")
        pipe = self.ctx.redis.pipeline(transaction=False)
        for e in envelopes:
            pipe.xadd(stream, e.to_stream_fields())
        await pipe.execute()

    async def submit(self, task: str, annotator: str, value: Any, **kw: Any) -> Envelope:
        envelope = self.annotation(task, annotator, value, **kw)
        await self.publish(envelope)
        return envelope

    async def published(self, type: str = "consensus.updated", **match: Any) -> list[dict[str, Any]]:
        """Payloads of `type` on the consensus stream (what the worker and api services would read)."""
        entries = await self.ctx.redis.xrange(self.ctx.stream)
        out = []
        for _, fields in entries:
            if fields.get("type") != type:
                continue
            envelope = json.loads(fields["envelope"])
            payload = envelope["payload"]
            if envelope.get("project_id") == self.project_id and all(payload.get(k) == v for k, v in match.items()):
                out.append(payload)
        return out

    async def wait_published(self, type: str = "consensus.updated", count: int = 1, timeout: float = 15.0,
                             **match: Any) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            found = await self.published(type, **match)
            return found if len(found) >= count else None
        return await wait_until(enough, timeout=timeout)

    async def wait_handled(self, *envelopes: Envelope, timeout: float = 15.0) -> None:
        """Until the consumer has committed these events (their ids are in its inbox). Batches of different
        tasks may commit out of stream order, so a later event is no proof that an earlier one was handled."""
        import sqlalchemy as sa

        from services.consensus.db import inbox

        ids = {e.id for e in envelopes}

        async def done() -> bool | None:
            async with self.ctx.session_factory() as session:
                found = (await session.execute(sa.select(sa.func.count()).select_from(inbox)
                                               .where(inbox.c.event_id.in_(ids)))).scalar_one()
            return True if found == len(ids) else None
        await wait_until(done, timeout=timeout)

    async def task(self, task: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.base}/tasks/{task}", headers=self.manager())
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def consensus(settings) -> AsyncIterator[ConsensusEnv]:  # noqa: ANN001
    app = create_app(settings)
    async with running(app) as client:
        ctx: ServiceContext = app.state.ctx
        signer = Signer()
        ctx.extras["key_source"] = StaticKeySource(signer.jwks)
        ctx.extras["refit_poll_seconds"] = 0.2
        yield ConsensusEnv(client=client, ctx=ctx, signer=signer, org_id=str(uuid.uuid4()))
