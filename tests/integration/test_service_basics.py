"""Every service: liveness, readiness (and its 503), metrics, problem+json, request ids."""

from __future__ import annotations

import importlib
import socket

import pytest

from tests.conftest import running

SERVICES = ["api", "worker", "consensus"]
PREFIX = {"api": "/api/v1", "worker": "/api/v1/distribution", "consensus": "/api/v1/consensus"}


def create_app(service: str, settings):  # noqa: ANN001, ANN201
    return importlib.import_module(f"services.{service}.app").create_app(settings)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("service", SERVICES)
async def test_health_ready_metrics(service: str, settings) -> None:  # noqa: ANN001
    async with running(create_app(service, settings)) as client:
        for base in ("", PREFIX[service]):
            live = await client.get(f"{base}/healthz")
            assert live.status_code == 200 and live.json() == {"status": "ok", "service": service}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["redis"] == "ok"
        if service == "api":
            assert ready.json()["checks"]["object_storage"] == "ok"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "quorum_http_requests_total" in metrics.text
        assert f'service="{service}"' in metrics.text
        docs = await client.get(f"{PREFIX[service]}/openapi.json")
        assert docs.status_code == 200 and docs.json()["info"]["title"].startswith("Quorum")


@pytest.mark.parametrize("service", SERVICES)
async def test_readyz_names_redis_when_it_is_unreachable(service: str, settings) -> None:  # noqa: ANN001
    broken = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    async with running(create_app(service, broken)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["status"] == 503 and "redis" in body["detail"]
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("down")


@pytest.mark.parametrize("service", SERVICES)
async def test_problem_json_for_unknown_route_and_request_id(service: str, settings) -> None:  # noqa: ANN001
    async with running(create_app(service, settings)) as client:
        response = await client.get(f"{PREFIX[service]}/no-such-thing", headers={"X-Request-Id": "req-123"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == "req-123"
        assert response.json()["request_id"] == "req-123"
        generated = await client.get("/healthz")
        assert len(generated.headers["x-request-id"]) == 32


async def test_malformed_body_is_problem_json_naming_the_field(settings) -> None:  # noqa: ANN001
    from services.api.identity.deps import identity_of
    from tests.support.identity import bearer, fast_settings, login, make_org, make_user

    app = create_app("api", fast_settings(settings))
    async with running(app) as client:
        identity = identity_of(app.state.ctx)
        org_id, _ = await make_org(identity)
        admin = await login(client, await make_user(identity, org_id, ["org_admin"]))
        auth = bearer(admin.access_token)
        anonymous = await client.post("/api/v1/system/pings", json={"message": "hi"})
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        response = await client.post("/api/v1/system/pings", content=b"{not json",
                                     headers={"content-type": "application/json", **auth})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        wrong_type = await client.post("/api/v1/system/pings", json={"message": 12345}, headers=auth)
        assert wrong_type.status_code == 422
        body = wrong_type.json()
        assert body["errors"][0]["pointer"] == "/body/message"
        assert "Traceback" not in wrong_type.text
        # the services that record pings store the message in PostgreSQL, which cannot hold NUL
        nul = await client.post("/api/v1/system/pings", json={"message": "hi\x00"}, headers=auth)
        assert nul.status_code == 422 and nul.json()["errors"][0]["pointer"] == "/body/message", nul.text
