"""The api service: front door and annotation storage."""

from __future__ import annotations

from fastapi import FastAPI

from services.api.db import inbox, outbox
from services.api.system.views import router as system_router
from shared.app import ServiceContext, ServiceSpec, create_service_app
from shared.config import Settings, get_settings


async def _open_blob_store(ctx: ServiceContext) -> None:
    from shared.storage import create_blob_store

    ctx.extras["blob_store"] = create_blob_store(ctx.settings)


async def _blob_store_ready(ctx: ServiceContext) -> None:
    await ctx.extras["blob_store"].ping()


def build_spec() -> ServiceSpec:
    return ServiceSpec(
        name="api", title="Quorum API", routers=[system_router], outbox=outbox, inbox=inbox,
        readiness={"object_storage": _blob_store_ready}, on_startup=[_open_blob_store],
    )


def create_app(settings: Settings | None = None, *, run_background: bool = True) -> FastAPI:
    return create_service_app(build_spec(), settings or get_settings(), run_background=run_background)
