"""The demo `quorum up` seeds: an organisation with an admin, a project, and tasks with PII to see redacted.

The admin is created directly in the database (as `quorum users create-admin` does); everything else goes
through the public HTTP API once the services are ready, exactly as a frontend would.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from shared.config import Settings

DEMO_ORG = "demo"
DEMO_EMAIL = "admin@demo.quorum.test"
CREDENTIALS_FILE = "demo-credentials.json"

DEMO_PROJECT = {
    "name": "Demo: support-ticket sentiment",
    "description": "Seeded by `quorum up`. Three annotators per ticket; consensus by Dawid-Skene.",
    "instructions": "Read the ticket and choose the customer's sentiment.",
    "label_schema": {
        "data": [{"name": "text", "type": "text"}],
        "controls": [{"name": "sentiment", "type": "single_choice", "source": "text",
                      "options": ["positive", "neutral", "negative"]}],
    },
    "overlap": 3,
    "consensus": {"method": "dawid_skene", "target_confidence": 0.8, "max_labels": 5},
    "pii": {"enabled": True, "default": "mask", "entities": {"PERSON": "pseudonymise"}},
}

DEMO_TICKETS = [
    "Hi, this is Maria Gonzalez. My card 4111 1111 1111 1111 was charged twice, please call me on +1 415 555 0134.",
    "Great service! Thanks to Dr. James Whitaker for the quick fix. You can email me at j.smith@example.com.",
    "I moved to 221 Baker Street, London; please update my address. My IBAN is GB82 WEST 1234 5698 7654 32.",
    "The order arrived late and the box was damaged. Order number 88412-AX, my SSN on file 536-22-1947 is wrong.",
    "Login works again after the reset, thank you. My IP was 203.0.113.42 if you need it for the logs.",
    "Product is fine, nothing special. Born 12/03/1985, in case the warranty form needs my date of birth.",
    "Terrible experience, nobody answered for a week. Contact Olivia Brown at olivia.brown@example.org.",
    "Version 2.4.1 fixed my issue, very happy. Router MAC 00:1A:2B:3C:4D:5E for your records.",
]


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


async def ensure_admin(settings: Settings) -> dict[str, Any]:
    """Create the demo admin once; its password is written to a 0600 file under the data dir, never logged."""
    from services.api.identity.cli import create_admin

    path = credentials_path(settings.data_dir)
    if path.exists():
        return json.loads(path.read_text())
    password = secrets.token_urlsafe(18)
    created = await create_admin(settings, org_slug=DEMO_ORG, org_name="Demo Org", org_kind="data_owner",
                                 email=DEMO_EMAIL, name="Demo Admin", password=password, roles=["org_admin"])
    record = {"email": DEMO_EMAIL, "password": password, "org_id": created["org_id"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    return record


def seed_over_http(base_url: str, credentials: dict[str, Any], *, timeout: float = 120.0) -> dict[str, str]:
    """Wait for readiness, then create the demo project and import tickets (idempotent across restarts)."""
    api = f"{base_url}/api/v1"
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + timeout
        prefixes = ("/api/v1", "/api/v1/distribution", "/api/v1/consensus")
        while not all(_ready(client, f"{base_url}{p}/readyz") for p in prefixes):
            if time.monotonic() > deadline:
                raise TimeoutError("services did not become ready")
            time.sleep(0.2)  # polling readiness of a server starting in this process
        login = client.post(f"{api}/auth/login", json={"email": credentials["email"],
                                                       "password": credentials["password"]})
        login.raise_for_status()
        token = login.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        projects = client.get(f"{api}/projects", headers=auth).json()
        existing = [p for p in projects.get("items", []) if p["name"] == DEMO_PROJECT["name"]]
        if existing:
            project_id = existing[0]["id"]
        else:
            created = client.post(f"{api}/projects", json=DEMO_PROJECT, headers=auth)
            created.raise_for_status()
            project_id = created.json()["id"]
        body = "\n".join(json.dumps({"data": {"text": t}}) for t in DEMO_TICKETS).encode()
        imported = client.post(f"{api}/projects/{project_id}/imports?format=jsonl", content=body,
                               headers={**auth, "content-type": "application/x-ndjson",
                                        "Idempotency-Key": "demo-seed-v1"})
        imported.raise_for_status()
        op_id = imported.json()["id"]
        while client.get(f"{api}/imports/{op_id}", params={"wait": 5}, headers=auth).json().get("status") not in (
                "succeeded", "failed"):
            if time.monotonic() > deadline:
                break
    return {"project_id": project_id, "project": f"{api}/projects/{project_id}",
            "tasks": f"{api}/projects/{project_id}/tasks", "import": f"{api}/imports/{op_id}"}


def _ready(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False
