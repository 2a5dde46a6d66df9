"""Bulk import: Label Studio vs Quorum (redaction off; then redaction + encryption), same file, same run.

    .venv/bin/python benchmarks/ingest.py                 # 100,000 tasks (~200 words, PII-seeded), 3 rounds
    .venv/bin/python benchmarks/ingest.py --n 20000 --skip-labelstudio --rounds 1

Each round runs Label Studio, then each Quorum mode, and compares each Quorum rate with that round's Label
Studio rate; the summary gives the median of those ratios and their range (this machine's speed drifts by a
third within an hour, for either system, so only runs close in time compare).

What is measured, per system: wall time from the first byte of the POST to the import being complete
(Quorum: `GET /imports/{id}?wait=30` answers `succeeded`, as soon as it is; Label Studio: its synchronous
import returns), tasks/s, and the
peak RSS of the server's whole process tree (psutil, sampled every 50 ms; Quorum's tree includes its
redaction/encryption worker processes). Both servers run on this machine with the documented defaults:
Quorum as `quorum serve api` (one uvicorn process + its import worker pool) on PostgreSQL/Redis at
127.0.0.1; Label Studio 1.23.2 from PyPI in `.bench/labelstudio-venv` (Django dev server, SQLite).

The file is one JSON array of Label Studio tasks `[{"data": {"text": ...}}, ...]`, which both accept.

`--s3` stores Quorum's blobs (the encrypted upload it imports from) in S3, as in production, instead of the
embedded default's local directory: a moto S3 server started for the run, in its own process (outside the
measured process tree, but on the same CPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH = ROOT / ".bench"
LS_VENV = BENCH / "labelstudio-venv"
LS_VERSION = "1.23.2"
PY = sys.executable

import httpx  # noqa: E402
import psutil  # noqa: E402

TEXT_SCHEMA = {"data": [{"name": "text", "type": "text"}],
               "controls": [{"name": "sentiment", "type": "single_choice", "source": "text",
                             "options": ["positive", "negative", "neutral"]}]}
LS_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/><Choice value="neutral"/></Choices>
</View>"""


# -- data ------------------------------------------------------------------------------------------------

def make_file(n: int, path: Path, text_chars: int | None = None) -> Path:
    """`text_chars`: each task's text cut to that many characters after its row number (a file of small rows:
    blocks are then held to about QUORUM_IMPORT_BLOCK_ROWS rows, not a megabyte of them)."""
    if path.exists():
        return path
    from benchmarks.datagen.pii_corpus import iter_corpus

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for i, doc in enumerate(iter_corpus(n, seed=7)):
            if i:
                fh.write(",\n")
            text = f"{i} {doc.text[:text_chars]}" if text_chars else doc.text  # (numbered: no two alike)
            fh.write(json.dumps({"data": {"text": text}}, ensure_ascii=False))
        fh.write("]\n")
    tmp.rename(path)
    return path


def file_chunks(path: Path, size: int = 1024 * 1024):
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


# -- memory sampling --------------------------------------------------------------------------------------

class TreeMemory:
    """Peak memory of a process and all its descendants, sampled in a thread: RSS summed over the processes
    (pages shared between them, such as libpython and numpy, counted once per process) and PSS (each shared
    page split between the processes sharing it, so the sum is what the tree really occupies).

    RSS is read every `interval` (a cheap status read). PSS walks every mapping of the process (~6 ms of CPU
    for a 250 MB process here): read every 50 ms over a 5-process tree, it took half a core of the 2 from the
    system being measured, so it is read every `pss_interval`; imports hold their memory flat while they run."""

    def __init__(self, pid: int, interval: float = 0.05, pss_interval: float = 1.0) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_interval = pss_interval
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def current(self, *, pss: bool) -> tuple[int, int]:
        rss = total_pss = 0
        for proc in self._processes():
            try:
                if pss:
                    info = proc.memory_full_info()
                    total_pss += info.pss
                else:
                    info = proc.memory_info()
            except psutil.Error:
                continue
            rss += info.rss
        return rss, total_pss

    def _sample(self, *, pss: bool) -> None:
        rss, total_pss = self.current(pss=pss)
        self.peak = max(self.peak, rss)
        self.peak_pss = max(self.peak_pss, total_pss)

    def _run(self) -> None:
        next_pss = time.monotonic() + self.pss_interval
        while not self._stop.is_set():
            pss = time.monotonic() >= next_pss
            if pss:
                next_pss += self.pss_interval
            self._sample(pss=pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._sample(pss=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(pss=True)


def cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server process, its worker processes, and every PostgreSQL process of
    the machine (backends, WAL writer, checkpointer): where an import's work went, independent of load."""
    out = {"api": 0.0, "workers": 0.0, "postgres": 0.0}
    root = psutil.Process(root_pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        out["api" if proc.pid == root_pid else "workers"] += t.user + t.system
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] in ("postgres", "postmaster"):
                t = proc.cpu_times()
                out["postgres"] += t.user + t.system
        except psutil.Error:
            continue
    return out


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Quorum -------------------------------------------------------------------------------------------------

def quorum_login(base: str, email: str, password: str) -> str:
    """The real sign-in a data owner does: password, forced TOTP enrolment, first code → access token."""
    import pyotp

    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        r.raise_for_status()
        answer = r.json()
        if answer.get("access_token"):
            return answer["access_token"]
        ticket = answer["mfa_ticket"]
        r = client.post("/api/v1/auth/login/totp/enrol", json={"mfa_ticket": ticket})
        r.raise_for_status()
        code = pyotp.TOTP(r.json()["secret"]).now()
        r = client.post("/api/v1/auth/login/totp/confirm", json={"mfa_ticket": ticket, "code": code})
        r.raise_for_status()
        return r.json()["access_token"]


SETTLE_SECONDS = 20.0


def settle() -> None:
    """Each system's import starts from an idle machine with nothing left to write back: otherwise the kernel
    writes out the previous run's gigabyte of dirty pages (PostgreSQL files, WAL, spool; 30 s after they were
    written) during the next one (measured: the redaction-off import right after the redaction-on one used
    93-97 µs of CPU per task, 68-85 µs from idle), which would favour whichever system runs first."""
    os.sync()
    time.sleep(SETTLE_SECONDS)


def checkpoint(admin_url: str) -> None:
    """CHECKPOINT (superuser): write out what earlier work left dirty, so a measured import does not pay for it."""
    import asyncpg

    from shared.db import asyncpg_dsn

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    asyncio.run(run())


def run_quorum(path: Path, n: int, args: argparse.Namespace) -> list[dict]:
    """Each mode imports into a fresh database and server, as Label Studio imports into a fresh data dir: a
    mode measured after another would also pay for the rows, dirty buffers and WAL the other left."""
    # Redaction off right after Label Studio: the pair whose ratio is the hardest target sits closest in time.
    modes = (("Quorum, redaction off (encrypted)", False), ("Quorum, redaction + encryption", True))
    return [run_quorum_mode(path, n, args, label, pii)
            for label, pii in modes if args.quorum_modes in ("both", "on" if pii else "off")]


def run_quorum_mode(path: Path, n: int, args: argparse.Namespace, label: str, pii: bool) -> dict:
    from shared.embedded import create_database
    from shared.migrations import upgrade_all

    admin = args.database_url
    db_name = f"quorum_bench_{secrets.token_hex(3)}"
    create_database(admin, db_name)
    database_url = admin.rsplit("/", 1)[0] + "/" + db_name
    upgrade_all(database_url)
    data_dir = BENCH / "ingest" / f"quorum-{db_name}"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    prefix = f"bench-{secrets.token_hex(3)}"
    env = {**os.environ, "QUORUM_DATABASE_URL": database_url, "QUORUM_REDIS_URL": args.redis_url,
           "QUORUM_DATA_DIR": str(data_dir), "QUORUM_ENVIRONMENT": "development",
           "QUORUM_ACCESS_TOKEN_TTL_SECONDS": "3600",
           "QUORUM_MIGRATE_ON_START": "false", "QUORUM_STREAM_PREFIX": prefix,
           "QUORUM_LOG_LEVEL": args.server_log_level, "QUORUM_MAX_UPLOAD_BYTES": str(2 * 1024**3)}
    email, password = "bench-admin@example.com", secrets.token_urlsafe(16)
    subprocess.run([PY, "-m", "shared.cli", "users", "create-admin", "--org", f"bench-{secrets.token_hex(3)}",
                    "--email", email, "--password-stdin"], input=password + "\n", text=True, cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([PY, "-m", "shared.cli", "serve", "api", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", 60, server)
        token = quorum_login(base, email, password)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            r = client.post("/api/v1/projects", json={"name": label, "label_schema": TEXT_SCHEMA,
                                                      "pii": {"enabled": pii}})
            r.raise_for_status()
            project_id = r.json()["id"]
            checkpoint(admin)  # no dirty buffers or WAL left by the databases of earlier runs
            settle()
            with TreeMemory(server.pid) as mem:
                cpu_before = cpu_seconds(server.pid)
                started = time.perf_counter()
                r = client.post(f"/api/v1/projects/{project_id}/imports", content=file_chunks(path),
                                headers={"Content-Type": "application/json", "Content-Length": str(path.stat().st_size)},
                                params={"filename": path.name})
                r.raise_for_status()
                accepted = time.perf_counter() - started
                op_id = r.json()["id"]
                while True:  # the server answers as soon as the import ends
                    status = client.get(f"/api/v1/imports/{op_id}", params={"wait": 30}).json()
                    if status["status"] in ("succeeded", "failed"):
                        break
                elapsed = time.perf_counter() - started
                cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(server.pid).items()}
            created = status["counts"]["created"]
            if status["status"] != "succeeded" or created != n:
                raise RuntimeError(f"{label}: import ended {status['status']} with {status['counts']} "
                                   f"(error: {status['error']}, first errors: {status['errors'][:3]})")
            result = {"system": label, "tasks": created, "seconds": elapsed, "rate": created / elapsed,
                      "peak_rss": mem.peak, "peak_pss": mem.peak_pss, "upload_seconds": accepted}
            print(f"  {label}: {created} tasks in {elapsed:.1f}s (upload {accepted:.1f}s) = "
                  f"{created / elapsed:,.0f} tasks/s, peak RSS {mem.peak / 2**20:.0f} MiB, PSS {mem.peak_pss / 2**20:.0f} MiB",
                  flush=True)
            per_task = ", ".join(f"{k} {v / max(created, 1) * 1e6:.1f} µs" for k, v in cpu.items())
            print("    CPU per task: " + per_task
                  + f" (total {sum(cpu.values()) / max(created, 1) * 1e6:.1f} µs; {os.cpu_count()} cores give "
                  f"{(os.cpu_count() or 1) * elapsed / max(created, 1) * 1e6:.1f} µs of CPU per task at this rate)",
                  flush=True)
            if args.check_pii:
                sample = client.get(f"/api/v1/projects/{project_id}/tasks",
                                    params={"include_data": "true", "limit": 1}).json()
                print(f"  sample task ({label}):", sample["items"][0]["data"]["text"][:120], "...")
        return result
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        from tests.conftest import _delete_streams, _drop_database

        _delete_streams(args.redis_url, f"{prefix}:*")
        if not args.keep_db:
            _drop_database(admin, db_name)
        shutil.rmtree(data_dir, ignore_errors=True)


# -- Label Studio ---------------------------------------------------------------------------------------------

def ensure_labelstudio() -> Path:
    exe = LS_VENV / "bin" / "label-studio"
    if exe.exists():
        return exe
    print(f"installing label-studio=={LS_VERSION} into {LS_VENV} (~80 s) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], check=True)
    subprocess.run([str(LS_VENV / "bin" / "pip"), "install", "-q", f"label-studio=={LS_VERSION}"], check=True)
    return exe


def run_labelstudio(path: Path, n: int) -> dict:
    exe = ensure_labelstudio()
    work = BENCH / "ingest" / f"labelstudio-{secrets.token_hex(3)}"
    (work / "home").mkdir(parents=True)
    (work / "data").mkdir()
    port = free_port()
    token = secrets.token_hex(20)
    env = {**os.environ, "HOME": str(work / "home"), "LABEL_STUDIO_BASE_DATA_DIR": str(work / "data"),
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
           "FRONTEND_SENTRY_DSN": ""}
    log = open(work / "server.log", "w")
    server = subprocess.Popen([str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
                               str(port), "--data-dir", str(work / "data"), "--username", "admin@example.com",
                               "--password", secrets.token_hex(8), "--user-token", token,
                               "--enable-legacy-api-token", "--log-level", "WARNING"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", 900, server)
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=3600) as client:
            version = client.get("/api/version").json().get("release", "?")
            r = client.post("/api/projects", json={"title": "ingest bench", "label_config": LS_CONFIG})
            r.raise_for_status()
            project_id = r.json()["id"]
            settle()
            with TreeMemory(server.pid) as mem:
                started = time.perf_counter()
                r = client.post(f"/api/projects/{project_id}/import", content=file_chunks(path),
                                headers={"Content-Type": "application/json", "Content-Length": str(path.stat().st_size)})
                elapsed = time.perf_counter() - started
            if r.status_code >= 400:
                raise RuntimeError(f"Label Studio import failed: {r.status_code} {r.text[:500]}")
            count = client.get(f"/api/projects/{project_id}").json().get("task_number")
        if count != n:
            raise RuntimeError(f"Label Studio holds {count} tasks, expected {n}")
        result = {"system": f"Label Studio {version} (no redaction, no encryption)", "tasks": count,
                  "seconds": elapsed, "rate": count / elapsed, "peak_rss": mem.peak,
                  "peak_pss": mem.peak_pss}
        print(f"  {result['system']}: {count} tasks in {elapsed:.1f}s = {result['rate']:,.0f} tasks/s, "
              f"peak RSS {mem.peak / 2**20:.0f} MiB, PSS {mem.peak_pss / 2**20:.0f} MiB", flush=True)
        return result
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


# -- report ------------------------------------------------------------------------------------------------------

def report(results: list[dict], n: int, path: Path, command: str, text_chars: int | None = None) -> str:
    """One row per system and round, each Quorum rate against the Label Studio run of its own round; with
    several rounds, a summary of the per-round ratios (their median, lowest and highest)."""
    lines = ["| round | system | tasks | seconds | tasks/s | vs Label Studio (same round) | peak RSS (MiB / MB) "
             "| peak PSS (MiB / MB) |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    peers = {r["round"]: r for r in results if r["system"].startswith("Label Studio")}
    ratios: dict[str, list[float]] = {}
    for r in results:
        ls = peers.get(r["round"])
        ratio = r["rate"] / ls["rate"] if ls else None
        if ratio is not None and r is not ls:
            ratios.setdefault(r["system"], []).append(ratio)
        lines.append(f"| {r['round']} | {r['system']} | {r['tasks']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} | "
                     f"{f'{ratio:.2f}×' if ratio is not None else '–'} | "
                     f"{r['peak_rss'] / 2**20:.0f} / {r['peak_rss'] / 1e6:.0f} | "
                     f"{r['peak_pss'] / 2**20:.0f} / {r['peak_pss'] / 1e6:.0f} |")
    table = "\n".join(lines)
    rounds = len({r["round"] for r in results})
    if rounds > 1:
        summary = ["| system | median tasks/s | median ratio (per round) | lowest | highest | highest peak RSS (MB) |",
                   "|---|---:|---:|---:|---:|---:|"]
        for system in dict.fromkeys(r["system"] for r in results):
            runs = [r for r in results if r["system"] == system]
            rates = sorted(r["rate"] for r in runs)
            rs = sorted(ratios.get(system, []))
            summary.append(f"| {system} | {statistics.median(rates):,.0f} | "
                           + (f"{statistics.median(rs):.2f}× | {rs[0]:.2f}× | {rs[-1]:.2f}× | " if rs else "– | – | – | ")
                           + f"{max(r['peak_rss'] for r in runs) / 1e6:.0f} |")
        table += "\n\n" + "\n".join(summary)
    size = path.stat().st_size / 1e6
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    what = f"texts cut to a row number and {text_chars} characters" if text_chars else "~200 words"
    return (f"Command: `{command}` — {n:,} tasks of {what} seeded with PII "
            f"(`benchmarks/datagen/pii_corpus.py`, seed 7), one {size:.0f} MB JSON array, {os.cpu_count()} CPUs, "
            f"{rounds} round(s), measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average at the end {load}."
            f"\n\n{table}\n")


def use_s3() -> None:
    """moto's S3 server for the run, in its own process; Quorum finds it through the QUORUM_S3_* settings."""
    import atexit

    from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, start_s3_process

    endpoint, stop = start_s3_process()
    atexit.register(stop)
    os.environ.update({"QUORUM_S3_ENDPOINT": endpoint, "QUORUM_S3_ACCESS_KEY": S3_ACCESS_KEY,
                       "QUORUM_S3_SECRET_KEY": S3_SECRET_KEY, "QUORUM_S3_BUCKET": f"bench-{secrets.token_hex(3)}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--text-chars", type=int, default=None,
                    help="cut each task's text to this many characters (a file of small rows)")
    ap.add_argument("--database-url", default=os.environ.get("QUORUM_BENCH_DATABASE_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis-url", default=os.environ.get("QUORUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--skip-labelstudio", action="store_true")
    ap.add_argument("--quorum-modes", choices=("both", "on", "off"), default="both",
                    help="which Quorum runs: redaction on, off, or both (default)")
    ap.add_argument("--keep-db", action="store_true")
    ap.add_argument("--server-log-level", default="WARNING")
    ap.add_argument("--check-pii", action="store_true")
    ap.add_argument("--s3", action="store_true", help="Quorum's blobs in S3 (a moto server for the run)")
    ap.add_argument("--write-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                    help="idle seconds before each measured import (0: none)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of Label Studio then Quorum; each Quorum run is compared with its round's Label "
                         "Studio run (the machine's speed drifts by a third within an hour)")
    args = ap.parse_args(argv)
    globals()["SETTLE_SECONDS"] = args.settle
    command = "python benchmarks/ingest.py" + (f" --n {args.n}" if args.n != 100_000 else "") + \
        (f" --rounds {args.rounds}" if args.rounds != 3 else "") + \
        (f" --text-chars {args.text_chars}" if args.text_chars else "") + (" --s3" if args.s3 else "")
    if args.s3:
        use_s3()
    (BENCH / "ingest").mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.text_chars}c" if args.text_chars else ""
    path = make_file(args.n, BENCH / "ingest" / f"tasks-{args.n}{suffix}.json", args.text_chars)
    print(f"file: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.n} tasks)", flush=True)
    results = []
    for round_number in range(1, max(1, args.rounds) + 1):
        print(f"round {round_number}", flush=True)
        in_round = [run_labelstudio(path, args.n)] if not args.skip_labelstudio else []
        in_round += run_quorum(path, args.n, args)
        for r in in_round:
            r["round"] = round_number
        results += in_round
    text = report(results, args.n, path, command, args.text_chars)
    print()
    print(text)
    if args.write_results:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write("\n## Ingest: bulk import vs Label Studio\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
