"""The worker service."""

from __future__ import annotations

from fastapi import FastAPI

from services.worker.db import inbox, outbox, received_pings
from shared.app import ServiceSpec, Subscription, create_service_app
from shared.config import Settings, get_settings
from shared.ping import ping_handler, ping_router


def build_spec() -> ServiceSpec:
    return ServiceSpec(
        name="worker", title="Quorum task distribution", routers=[ping_router(received_pings)], outbox=outbox, inbox=inbox,
        subscriptions=[Subscription(producers=["api"], handlers={"system.ping": ping_handler(received_pings)})],
    )


def create_app(settings: Settings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(build_spec(), settings or get_settings(), run_background=run_background)
