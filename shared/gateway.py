"""One base URL for all three services in one process (development and `quorum up`).

Routes by path prefix exactly as the reverse proxy does in deployment (deploy/proxy/nginx.conf).
"""

from __future__ import annotations

import contextlib

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.app import PREFIXES


class Gateway:
    def __init__(self, apps: dict[str, ASGIApp]) -> None:
        self.apps = apps
        # longest prefix first so /api/v1/consensus wins over /api/v1
        self.routes = sorted(((PREFIXES[name], app) for name, app in apps.items()), key=lambda r: -len(r[0]))
        self.default = apps["api"]

    def route(self, path: str) -> ASGIApp:
        for prefix, app in self.routes:
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.route(scope.get("path", "/"))(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with contextlib.AsyncExitStack() as stack:
            try:
                for app in self.apps.values():
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                raise
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})


def create_gateway(settings=None) -> Gateway:  # noqa: ANN001
    from services.api.app import create_app as api
    from services.consensus.app import create_app as consensus
    from services.worker.app import create_app as worker

    return Gateway({"api": api(settings), "worker": worker(settings), "consensus": consensus(settings)})
