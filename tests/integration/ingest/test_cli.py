"""`quorum import FILE --project ID` against a real HTTP server (uvicorn in a thread, same database)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
from pathlib import Path

import pytest
import uvicorn

from services.api.app import create_app
from shared.cli import main
from tests.conftest import wait_until
from tests.integration.ingest.conftest import IngestEnv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_cli_uploads_with_progress_and_reports_the_outcome(ingest: IngestEnv, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pid = await ingest.create_project()
    token = await ingest.token(roles=("project_manager",))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ingest.ctx.settings, run_background=False), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: server.started, timeout=20)
        path = tmp_path / "tasks.jsonl.gz"
        rows = [{"text": f"cli row {i}"} for i in range(30)] + [{"nope": 1}]
        path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
        argv = ["import", str(path), "--project", pid, "--url", f"http://127.0.0.1:{port}", "--token", token]
        code = await asyncio.to_thread(main, argv)
        out = capsys.readouterr()
        assert code == 0, out
        assert "upload" in out.err and "process" in out.err and "100.0%" in out.err
        assert "succeeded — 30 created, 0 duplicates, 1 invalid" in out.out
        assert "row 31 data.text" in out.out
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 20)
