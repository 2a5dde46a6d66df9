"""The factory every service's FastAPI app is built by: health, readiness, metrics, logs, errors, events."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.config import Settings
from shared.db import create_engine, create_session_factory, ping
from shared.errors import install_problem_handlers, problem_response
from shared.events.consumer import Handler, StreamConsumer, dead_letter_stream
from shared.events.outbox import OutboxRelay, events_stream
from shared.observability import Metrics, RequestContextMiddleware, configure_logging
from shared.redis import create_redis

log = logging.getLogger("quorum.app")

PREFIXES = {"api": "/api/v1", "worker": "/api/v1/distribution", "consensus": "/api/v1/consensus"}


@dataclass
class Subscription:
    """What a service consumes: streams of which producers, and a handler per event type."""

    producers: list[str]
    handlers: dict[str, Handler]
    # builds the consumer from StreamConsumer's keyword arguments (a subclass that batches, say); None: StreamConsumer
    consumer_factory: Callable[..., StreamConsumer] | None = None


@dataclass
class ServiceContext:
    """Per-process resources of one service; everything a replica shares with others lives in PG or Redis."""

    name: str
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis
    metrics: Metrics
    outbox: sa.Table
    inbox: sa.Table
    # the outbox relay and the stream consumers: their own pool, no pre-ping (they retry a failed transaction)
    events_engine: AsyncEngine | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    consumers: list[StreamConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return events_stream(self.settings.stream_prefix, self.name)

    def producer_stream(self, producer: str) -> str:
        return events_stream(self.settings.stream_prefix, producer)


ReadinessCheck = Callable[[ServiceContext], Awaitable[None]]
Hook = Callable[[ServiceContext], Awaitable[None]]


@dataclass
class ServiceSpec:
    name: str
    title: str
    routers: list[APIRouter]
    outbox: sa.Table
    inbox: sa.Table
    subscriptions: list[Subscription] = field(default_factory=list)
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    background: list[Callable[[ServiceContext], Awaitable[None]]] = field(default_factory=list)


def get_context(request: Request) -> ServiceContext:
    return request.app.state.ctx


def create_service_app(spec: ServiceSpec, settings: Settings, *, run_background: bool = True) -> FastAPI:
    prefix = PREFIXES[spec.name]
    metrics = Metrics(spec.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.should_migrate_on_start:
            from shared.migrations import upgrade

            await asyncio.to_thread(upgrade, spec.name, settings.database_url)
        engine = create_engine(settings.database_url, application_name=f"quorum-{spec.name}")
        events_engine = create_engine(settings.database_url, application_name=f"quorum-{spec.name}-events",
                                      pool_size=2, pre_ping=False)
        redis = create_redis(settings.redis_url)
        ctx = ServiceContext(name=spec.name, settings=settings, engine=engine,
                             session_factory=create_session_factory(engine), redis=redis, metrics=metrics,
                             outbox=spec.outbox, inbox=spec.inbox, events_engine=events_engine)
        app.state.ctx = ctx
        for hook in spec.on_startup:
            await hook(ctx)
        if run_background:
            await _connect(events_engine, 2)  # the event path's first events should not wait for connections
            _start_background(spec, ctx)
        if settings.gc_freeze_at_startup:
            freeze_startup_objects()
        try:
            yield
        finally:
            for task in ctx.tasks:
                task.cancel()
            for task in ctx.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for hook in spec.on_shutdown:
                with contextlib.suppress(Exception):
                    await hook(ctx)
            await redis.aclose()
            await engine.dispose()
            await events_engine.dispose()

    app = FastAPI(title=spec.title, version="0.1.0", lifespan=lifespan,
                  openapi_url=f"{prefix}/openapi.json", docs_url=f"{prefix}/docs", redoc_url=None)
    app.state.spec = spec
    app.state.settings = settings
    app.state.metrics = metrics
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    ops = _operational_router(spec, metrics)
    app.include_router(ops)
    app.include_router(ops, prefix=prefix, include_in_schema=False)
    for router in spec.routers:
        app.include_router(router, prefix=prefix)
    return app


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive to the collector's permanent generation. What a server
    loads at startup (modules, routes, schemas, mappers) lives as long as the process, yet each full
    collection walked all of it again: ~100 ms with the event loop stopped, in the middle of an import."""
    gc.collect()
    gc.freeze()


async def _connect(engine: AsyncEngine, n: int) -> None:
    """Open `n` pooled connections now (the pool otherwise connects on first use)."""
    from contextlib import AsyncExitStack

    try:
        async with AsyncExitStack() as stack:
            for _ in range(n):
                await stack.enter_async_context(engine.connect())
    except Exception:  # the database may come up later: the loops connect (and retry) on their own
        log.warning("could not open event-path connections at startup", exc_info=True)


def _start_background(spec: ServiceSpec, ctx: ServiceContext) -> None:
    s = ctx.settings
    events_engine = ctx.events_engine or ctx.engine
    relay = OutboxRelay(events_engine, ctx.redis, spec.outbox, poll_interval=s.outbox_poll_interval,
                        on_published=lambda n: ctx.metrics.events_published.labels(spec.name).inc(n))
    ctx.tasks.append(asyncio.create_task(relay.run(), name=f"{spec.name}-outbox-relay"))
    for sub in spec.subscriptions:
        consumer = (sub.consumer_factory or StreamConsumer)(
            redis=ctx.redis, session_factory=create_session_factory(events_engine), inbox=spec.inbox,
            group=spec.name,
            streams=[ctx.producer_stream(p) for p in sub.producers], handlers=sub.handlers,
            dlq_stream=dead_letter_stream(s.stream_prefix, spec.name), block_ms=s.consumer_block_ms,
            batch=s.consumer_batch, reclaim_idle_ms=s.consumer_reclaim_idle_ms,
            max_deliveries=s.consumer_max_deliveries,
            on_handled=lambda t, o: ctx.metrics.events_handled.labels(spec.name, t, o).inc(),
            after_commit=relay.kick)
        ctx.consumers.append(consumer)
        ctx.tasks.append(asyncio.create_task(consumer.run(), name=f"{spec.name}-consumer"))
    for job in spec.background:
        ctx.tasks.append(asyncio.create_task(job(ctx), name=f"{spec.name}-{job.__name__}"))


def _operational_router(spec: ServiceSpec, metrics: Metrics) -> APIRouter:
    from shared.auth.dependencies import public

    router = APIRouter(tags=["operations"], dependencies=[public("operational: liveness, readiness, metrics")])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @router.get("/readyz", summary="Readiness: database, Redis and (api) object storage reachable",
                responses={503: {"description": "a dependency is down"}})
    async def readyz(request: Request) -> Response:
        ctx: ServiceContext = request.app.state.ctx
        checks: dict[str, ReadinessCheck] = {
            "database": lambda c: ping(c.engine),
            "redis": lambda c: c.redis.ping(),
            **spec.readiness,
        }
        results = await asyncio.gather(*(_check(fn, ctx) for fn in checks.values()))
        report = dict(zip(checks, results, strict=True))
        down = [name for name, outcome in report.items() if outcome != "ok"]
        if down:
            return problem_response(503, type="not-ready", title="Service not ready",
                                    detail=f"{spec.name} is not ready: {', '.join(down)} unreachable",
                                    service=spec.name, checks=report)
        return JSONResponse({"status": "ready", "service": spec.name, "checks": report})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return metrics.render()

    return router


async def _check(fn: ReadinessCheck, ctx: ServiceContext) -> str:
    try:
        await asyncio.wait_for(fn(ctx), timeout=2.0)
        return "ok"
    except Exception as exc:  # the name of what failed is enough; no internals to the client
        return f"down ({type(exc).__name__})"
