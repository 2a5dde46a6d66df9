"""The api service: front door and annotation storage."""

from __future__ import annotations

from fastapi import FastAPI

from services.api.db import inbox, outbox
from services.api.identity import startup as identity_startup
from services.api.identity.views import routers as identity_routers
from services.api.identity.views import well_known as identity_well_known
from services.api.erasure.views import router as erasure_router
from services.api.media.views import router as media_router
from services.api.system.views import router as system_router
from services.api.imports.service import close_process_pool, import_resumer
from services.api.imports.views import router as imports_router
from services.api.projects.views import router as projects_router
from services.api.tasks.views import router as tasks_router
from shared.app import ServiceContext, ServiceSpec, create_service_app
from shared.config import Settings, get_settings


async def _open_blob_store(ctx: ServiceContext) -> None:
    """`blob_store` encrypts (envelope, a data key per object in `data_keys`); `raw_blob_store` is the
    ciphertext backend underneath, for tools that must see what is really stored."""
    from services.api.keys.service import data_key_store
    from shared.crypto import EncryptedBlobStore
    from shared.storage import create_blob_store

    raw = create_blob_store(ctx.settings)
    ctx.extras["raw_blob_store"] = raw
    ctx.extras["blob_store"] = EncryptedBlobStore(raw, data_key_store(ctx))


async def _close_blob_store(ctx: ServiceContext) -> None:
    store = ctx.extras.get("raw_blob_store")
    if store is not None:
        await store.aclose()


async def _blob_store_ready(ctx: ServiceContext) -> None:
    await ctx.extras["blob_store"].ping()


def build_spec() -> ServiceSpec:
    return ServiceSpec(
        name="api", title="Quorum API",
        routers=[system_router, media_router, erasure_router, projects_router, imports_router, tasks_router,
                 *identity_routers],
        outbox=outbox, inbox=inbox,
        readiness={"object_storage": _blob_store_ready},
        on_startup=[_open_blob_store, identity_startup.on_startup],
        on_shutdown=[_close_blob_store, close_process_pool, identity_startup.on_shutdown], background=[import_resumer],
    )


def create_app(settings: Settings | None = None, *, run_background: bool = True) -> FastAPI:
    app = create_service_app(build_spec(), settings or get_settings(), run_background=run_background)
    app.include_router(identity_well_known)  # /.well-known/jwks.json sits outside the /api/v1 prefix
    return app
