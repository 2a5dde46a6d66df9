"""The import worker pool: all its processes start at once (at server start, by default), not one per block."""

from __future__ import annotations

from types import SimpleNamespace

from services.api.imports import service


def test_starting_the_pool_starts_every_worker() -> None:
    settings = SimpleNamespace(import_workers=2)
    service._shutdown_pool()
    try:
        service.start_pool(settings)
        pool = service._pool
        assert pool is not None and len(pool._processes) == 2  # both spawned now, before any import
        assert pool.submit(sum, [1, 2]).result(timeout=60) == 3
        service.start_pool(settings)  # already running: nothing new
        assert service._pool is pool and len(pool._processes) == 2
    finally:
        service._shutdown_pool()
