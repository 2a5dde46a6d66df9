"""`quorum import FILE --project ID`: upload a task file to a running api and follow the operation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson",
                 ".csv": "text/csv"}
BAR_WIDTH = 30


def register(sub: Any) -> None:
    cmd = sub.add_parser("import", help="bulk-import tasks from a JSON / JSON Lines / CSV file (gzip ok)")
    cmd.add_argument("file", type=Path)
    cmd.add_argument("--project", required=True, help="project id")
    cmd.add_argument("--url", default=None, help="api base URL (default QUORUM_PUBLIC_BASE_URL or http://host:port)")
    cmd.add_argument("--token", default=None, help="access token (default: $QUORUM_TOKEN)")
    cmd.add_argument("--format", choices=["json", "labelstudio", "jsonl", "csv"], default=None,
                     help="default: from the file extension")
    cmd.add_argument("--charset", default=None, help="text encoding if not UTF-8, e.g. latin-1")
    cmd.add_argument("--idempotency-key", default=None, help="re-running with the same key never imports twice")
    cmd.add_argument("--no-wait", action="store_true", help="print the operation id and return")
    cmd.set_defaults(func=cmd_import)


def _bar(fraction: float, label: str) -> str:
    filled = int(BAR_WIDTH * min(max(fraction, 0.0), 1.0))
    return f"\r{label:<10} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction * 100:5.1f}%"


def _chunks(path: Path, total: int, out: Any) -> Iterator[bytes]:
    sent = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            sent += len(chunk)
            out.write(_bar(sent / total if total else 1.0, "upload"))
            out.flush()
            yield chunk
    out.write("\n")


def run_import(base_url: str, token: str, project: str, path: Path, *, fmt: str | None = None,
               charset: str | None = None, idempotency_key: str | None = None, wait: bool = True,
               out: Any = sys.stderr, poll: float = 0.5) -> dict[str, Any]:
    import httpx

    name = path.name
    gz = name.endswith(".gz")
    suffix = Path(name[:-3]).suffix if gz else path.suffix
    content_type = CONTENT_TYPES.get(suffix.lower(), "application/json")
    if fmt in ("json", "labelstudio"):
        content_type = "application/json"
    elif fmt == "jsonl":
        content_type = "application/x-ndjson"
    elif fmt == "csv":
        content_type = "text/csv"
    if charset:
        content_type += f"; charset={charset}"
    size = path.stat().st_size
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type, "Content-Length": str(size)}
    if gz:
        headers["Content-Encoding"] = "gzip"
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(60, read=3600)) as client:
        r = client.post(f"/api/v1/projects/{project}/imports", content=_chunks(path, size, out), headers=headers,
                        params={"filename": name})
        if r.status_code != 202:
            raise SystemExit(f"import refused: {r.status_code} {r.json().get('detail') if r.content else ''}")
        op = r.json()
        if not wait:
            return op
        while op["status"] not in ("succeeded", "failed"):
            out.write(_bar(op["progress"], "process") + f"  {op['counts']['created']} created")
            out.flush()
            # The server answers when the import ends, or after `poll` seconds with its progress.
            op = client.get(f"/api/v1/imports/{op['id']}", params={"wait": poll},
                            headers={"Authorization": f"Bearer {token}"}).json()
        out.write(_bar(1.0, "process") + f"  {op['counts']['created']} created\n")
    return op


def cmd_import(args: argparse.Namespace) -> int:
    from shared.config import get_settings

    settings = get_settings()
    token = args.token or os.environ.get("QUORUM_TOKEN")
    if not token:
        print("quorum import needs an access token: --token or QUORUM_TOKEN", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2
    base = args.url or settings.public_base_url or f"http://{settings.host}:{settings.port}"
    op = run_import(base, token, args.project, args.file, fmt=args.format, charset=args.charset,
                    idempotency_key=args.idempotency_key, wait=not args.no_wait)
    counts = op["counts"]
    print(f"operation {op['id']}: {op['status']} — {counts['created']} created, {counts['duplicates']} duplicates, "
          f"{counts['invalid']} invalid")
    if op.get("error"):
        print(f"error: {op['error']}")
    for err in op.get("errors", [])[:20]:
        print(f"  row {err['row']}{' ' + err['field'] if err['field'] else ''}: {err['message']}")
    return 0 if op["status"] in ("succeeded", "queued", "running") else 1
