"""The consensus service: label store fed by events, incremental consensus, background refits, reports."""

from __future__ import annotations

import gc
from typing import Any

from fastapi import FastAPI

from services.consensus.agreement.views import router as agreement_router
from services.consensus.consumer import BatchingConsumer
from services.consensus.db import inbox, outbox, received_pings
from services.consensus.labels import handlers
from services.consensus.predictions.handlers import handle_predictions
from services.consensus.projects.handlers import handle_project_configured
from services.consensus.projects.views import router as settings_router
from services.consensus.quality.views import router as quality_router
from services.consensus.refits.service import refit_loop, warm_fit_pool
from services.consensus.refits.views import router as refits_router
from services.consensus.results.views import router as results_router
from shared.app import ServiceSpec, Subscription, create_service_app
from shared.config import Settings, get_settings
from shared.events.outbox import events_stream
from shared.ping import ping_handler, ping_router

ANNOTATION_SUBMITTED = "annotation.submitted"


async def freeze_startup_heap(ctx) -> None:  # noqa: ANN001 - the spec's Hook signature
    """Move what startup allocated (~200k objects: numpy, scipy, matplotlib, the app) out of the collector's
    sight. A full collection over it takes ~100 ms, stalling every event in flight - the p99 of the
    incremental update; afterwards a collection only scans what the service allocated since."""
    gc.collect()
    gc.freeze()


async def unfreeze_heap(ctx) -> None:  # noqa: ANN001
    gc.unfreeze()  # several apps in one process (tests): the next startup freezes again


def build_spec(settings: Settings | None = None) -> ServiceSpec:
    settings = settings or get_settings()
    # What this service publishes goes to its own stream; the handlers stage it in the consumer's transaction.
    stream = events_stream(settings.stream_prefix, "consensus")

    async def on_annotation(session, envelope) -> None:  # noqa: ANN001 - the consumer's Handler signature
        await handlers.handle_annotations(session, [envelope], stream=stream)

    async def on_annotations(session, envelopes) -> None:  # noqa: ANN001
        await handlers.handle_annotations(session, envelopes, stream=stream)

    async def on_review(session, envelope) -> None:  # noqa: ANN001
        await handlers.handle_review(session, envelope, stream=stream)

    async def on_gold(session, envelope) -> None:  # noqa: ANN001
        await handlers.handle_gold(session, envelope, stream=stream)

    async def on_predictions(session, envelope) -> None:  # noqa: ANN001
        await handle_predictions(session, envelope, stream=stream)

    def make_consumer(**kwargs: Any) -> BatchingConsumer:
        return BatchingConsumer(batch_handlers={ANNOTATION_SUBMITTED: on_annotations}, **kwargs)

    return ServiceSpec(
        name="consensus", title="Quorum consensus scoring",
        routers=[ping_router(received_pings), results_router, agreement_router, quality_router, settings_router,
                 refits_router],
        outbox=outbox, inbox=inbox,
        subscriptions=[Subscription(producers=["api"], consumer_factory=make_consumer, handlers={
            "system.ping": ping_handler(received_pings),
            "project.configured": handle_project_configured,
            ANNOTATION_SUBMITTED: on_annotation,
            "review.submitted": on_review,
            "gold.set": on_gold,
            "task.deleted": handlers.handle_task_deleted,
            "predictions.imported": on_predictions,
        })],
        background=[refit_loop],
        on_startup=[warm_fit_pool, freeze_startup_heap],
        on_shutdown=[unfreeze_heap],
    )


def create_app(settings: Settings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or get_settings()
    return create_service_app(build_spec(settings), settings, run_background=run_background)


__all__ = ["build_spec", "create_app"]
