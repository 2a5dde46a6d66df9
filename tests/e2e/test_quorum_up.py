"""`quorum up` from a clean data directory: embedded PostgreSQL and Redis, three services ready behind one URL,
the event path working, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.support.s3 import free_port

PREFIXES = {"api": "/api/v1", "worker": "/api/v1/distribution", "consensus": "/api/v1/consensus"}
STARTUP_TIMEOUT = 240.0  # first start initdb's a cluster; slow CI machines need the headroom


def _embedded_server_pids(data_dir: Path) -> dict[str, set[int]]:
    """PIDs of live PostgreSQL postmasters serving `data_dir/postgres` and Redis servers running in `data_dir/redis`."""
    found: dict[str, set[int]] = {"postgres": set(), "redis": set()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _is_zombie(entry):
                continue
            exe = os.path.basename(os.readlink(entry / "exe"))  # servers rewrite argv[0]; the binary stays
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if exe == "postgres" and f"-D {data_dir / 'postgres'}" in cmdline:
                found["postgres"].add(int(entry.name))
            elif exe == "redis-server" and os.readlink(entry / "cwd").startswith(str(data_dir / "redis")):
                found["redis"].add(int(entry.name))
        except OSError:
            continue
    return found


def _is_zombie(proc_dir: Path) -> bool:
    stat = (proc_dir / "stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def _quorum_command() -> list[str]:
    executable = Path(sys.executable).with_name("quorum")
    return [str(executable)] if executable.exists() else [sys.executable, "-m", "shared.cli"]


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.mark.slow
@pytest.mark.timeout(600)  # startup allowance (240 s) + shutdown, above the suite-wide 300 s
def test_quorum_up_from_a_clean_data_dir_serves_all_three_and_stops_cleanly() -> None:
    # pgserver drops root privileges to its own user, which must be able to reach the data directory:
    # a directory inside the project works where a root-only /tmp path would not.
    (ROOT / ".data").mkdir(exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="e2e-up-", dir=ROOT / ".data")).resolve()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(QUORUM_DATA_DIR=str(data_dir), QUORUM_ENVIRONMENT="development", QUORUM_LOG_LEVEL="INFO",
               PYTHONPATH=str(ROOT))
    stdout, stderr = data_dir / "stdout.log", data_dir / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen([*_quorum_command(), "up", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=data_dir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            ready: dict[str, dict] = {}
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while len(ready) < len(PREFIXES):
                assert proc.poll() is None, f"quorum up exited with {proc.returncode}:\n{_tail(stderr)}"
                assert time.monotonic() < deadline, f"not ready after {STARTUP_TIMEOUT}s: {ready}\n{_tail(stderr)}"
                for service, prefix in PREFIXES.items():
                    if service in ready:
                        continue
                    try:
                        response = client.get(f"{prefix}/readyz")
                    except httpx.TransportError:
                        break
                    if response.status_code == 200:
                        ready[service] = response.json()
                time.sleep(0.25)  # polling readiness with a deadline
            assert {s: r["service"] for s, r in ready.items()} == {s: s for s in PREFIXES}
            assert ready["api"]["checks"] == {"database": "ok", "redis": "ok", "object_storage": "ok"}
            assert base in stdout.read_text(), "the one base URL is printed"

            servers = _embedded_server_pids(data_dir)
            assert servers["postgres"], "an embedded PostgreSQL serves the data dir"
            assert servers["redis"], "an embedded Redis runs in the data dir"
            assert (data_dir / "blobs").is_dir(), "blobs default to a local directory under the data dir"

            # the demo seeds itself over HTTP once ready; its admin's password is only in a 0600 file
            deadline = time.monotonic() + 120
            while "Demo is ready" not in stdout.read_text(errors="replace"):
                assert time.monotonic() < deadline, f"demo never seeded:\n{_tail(stdout)}\n{_tail(stderr)}"
                time.sleep(0.1)
            credentials_file = data_dir / "demo-credentials.json"
            assert credentials_file.stat().st_mode & 0o077 == 0, "demo credentials must be private"
            credentials = json.loads(credentials_file.read_text())
            assert credentials["password"] not in stdout.read_text() + stderr.read_text(errors="replace")
            login = client.post("/api/v1/auth/login", json={"email": credentials["email"],
                                                            "password": credentials["password"]})
            assert login.status_code == 200, login.text
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            projects = client.get("/api/v1/projects").json()["items"]
            assert len(projects) == 1
            tasks = client.get(f"/api/v1/projects/{projects[0]['id']}/tasks").json()["items"]
            assert len(tasks) == 8
            texts = [client.get(f"/api/v1/tasks/{t['id']}").json()["data"]["text"] for t in tasks]
            for secret in ("4111 1111 1111 1111", "Maria Gonzalez", "j.smith@example.com", "536-22-1947"):
                assert not any(secret in text for text in texts), f"{secret!r} reached an annotator"

            assert client.post("/api/v1/system/pings", json={"message": "x"},
                               headers={"Authorization": ""}).status_code == 401
            event_id = client.post("/api/v1/system/pings", json={"message": "from quorum up"}).json()["event_id"]
            deadline = time.monotonic() + 30
            for prefix in (PREFIXES["worker"], PREFIXES["consensus"]):
                while (response := client.get(f"{prefix}/system/pings/{event_id}")).status_code != 200:
                    assert time.monotonic() < deadline, f"{prefix} never received the ping"
                    time.sleep(0.1)
                assert response.json()["times_applied"] == 1

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, _tail(stderr)
        assert "Traceback" not in stderr.read_text(errors="replace"), _tail(stderr)
        deadline = time.monotonic() + 15
        while any(_embedded_server_pids(data_dir).values()):
            assert time.monotonic() < deadline, f"embedded servers still running: {_embedded_server_pids(data_dir)}"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in set().union(*_embedded_server_pids(data_dir).values()):
            os.kill(pid, signal.SIGKILL)  # only after a failure: these were started for this test
        shutil.rmtree(data_dir, ignore_errors=True)
