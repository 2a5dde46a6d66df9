"""system.ping end to end through the one-process gateway: api publishes, worker and consensus each record it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from shared.config import Settings
from shared.gateway import Gateway, create_gateway
from tests.conftest import wait_until


@asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """Drive the gateway's ASGI lifespan as a server would, and give a client for it."""
    inbound: asyncio.Queue = asyncio.Queue()
    outbound: asyncio.Queue = asyncio.Queue()
    lifespan = asyncio.create_task(gateway({"type": "lifespan", "asgi": {"version": "3.0"}}, inbound.get,
                                           outbound.put))
    await inbound.put({"type": "lifespan.startup"})
    started = await asyncio.wait_for(outbound.get(), timeout=60)
    assert started["type"] == "lifespan.startup.complete", started
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway),
                                     base_url="http://quorum.test") as client:
            yield client
    finally:
        await inbound.put({"type": "lifespan.shutdown"})
        stopped = await asyncio.wait_for(outbound.get(), timeout=30)
        assert stopped["type"] == "lifespan.shutdown.complete"
        await asyncio.wait_for(lifespan, timeout=30)


async def test_ping_reaches_worker_and_consensus_exactly_once(settings: Settings) -> None:
    from services.api.identity.deps import identity_of
    from tests.support.identity import bearer, fast_settings, login, make_org, make_user

    gateway = create_gateway(fast_settings(settings))
    async with serving(gateway) as client:
        identity = identity_of(gateway.apps["api"].state.ctx)
        org_id, _ = await make_org(identity)
        admin = await login(client, await make_user(identity, org_id, ["org_admin"]))
        client.headers.update(bearer(admin.access_token))
        for prefix, service in (("/api/v1", "api"), ("/api/v1/distribution", "worker"),
                                ("/api/v1/consensus", "consensus")):
            health = await client.get(f"{prefix}/healthz")
            assert health.json()["service"] == service, f"{prefix} is routed to the wrong service"
        assert (await client.get("/healthz")).json()["service"] == "api", "everything else goes to api"

        accepted = await client.post("/api/v1/system/pings", json={"message": "hello services"})
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]

        for prefix, service in (("/api/v1/distribution", "worker"), ("/api/v1/consensus", "consensus")):
            async def received() -> httpx.Response | None:
                response = await client.get(f"{prefix}/system/pings/{event_id}")
                return response if response.status_code == 200 else None

            body = (await wait_until(received, timeout=15)).json()
            assert body["service"] == service
            assert body["message"] == "hello services" and body["producer"] == "api"
            assert body["times_applied"] == 1

        missing = await client.get("/api/v1/consensus/system/pings/01HZZZZZZZZZZZZZZZZZZZZZZZ")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
