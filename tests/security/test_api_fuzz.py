"""Property-based fuzzing of the api service from its own OpenAPI document (schemathesis, in-process ASGI).

Every operation gets generated requests of three kinds (schemathesis' phases): examples from the document,
coverage cases (boundary values, missing or mistyped fields, unexpected methods) and Hypothesis fuzzing with
valid and invalid data. Each is sent with a real access token, an org admin's and a vendor manager's, to the app
running on real PostgreSQL, Redis and S3 (moto), and must never be answered with a 5xx; every 4xx must be RFC 9457
problem+json.

A request whose path was generated valid addresses seeded resources (each operation gets its own project, user,
grant, media, ..., so a DELETE or a revocation in one operation cannot starve another); the others keep the
generated ids.

A failure reports the request as a `curl` command (token filtered out). Rerun one operation with -k, e.g.
    pytest tests/security/test_api_fuzz.py -k "POST and /api/v1/auth/login]"
Examples are derandomized: a run tests the same requests until this test or a library changes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from services.api.app import create_app
from services.api.identity.deps import identity_of
from shared.config import Settings
from shared.errors import PROBLEM_JSON
from tests.conftest import make_settings, running
from tests.support.identity import FAST, PASSWORD, TEXT_SCHEMA, make_org, make_user, unique
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

OPENAPI = "/api/v1/openapi.json"

# Bulk-import bodies in JSON Lines (schemathesis has no serializer for it): rows of small objects, or any bytes.
JSON_LINES = st.lists(st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=30), st.integers(), st.none()),
                                      max_size=3), max_size=5).map(
    lambda rows: "".join(json.dumps(row) + "\n" for row in rows).encode())
schemathesis.openapi.media_type("application/x-ndjson", st.one_of(JSON_LINES, st.binary(max_size=200)))
MAX_EXAMPLES = 15  # fuzzing phase, per operation and caller; the coverage phase adds its own fixed cases

# Operations are collected before any database is up, so from the document the app would serve (the fixture
# checks that the running app serves exactly this one).
DOCUMENT = create_app(Settings(environment="test"), run_background=False).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)

# Who sends the requests: an org admin reaches every route of its organisation; a vendor's manager reaches the
# routes of its grants and workers' tokens deeply, and every other one as far as its refusal. (The parametrization
# also gives each operation its own test id: with pytest >= 9.2, schemathesis 4.32 would otherwise name them all
# alike.)
CALLERS = ("org_admin", "vendor_manager")


@dataclass
class Seeded:
    admin_email: str
    vendor_slug: str
    vendor_manager_email: str
    worker_id: str


@dataclass
class Target:
    app: Any
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (caller, operation label) -> token
    path_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # operation label -> {param: real id}


async def _seed_people(settings: Settings) -> Seeded:
    """Organisations and users straight through the identity service (there is no sign-up route)."""
    app = create_app(settings, run_background=False)
    async with running(app):
        identity = identity_of(app.state.ctx)
        org, _ = await make_org(identity)
        vendor, vendor_slug = await make_org(identity, "vendor")
        admin = await make_user(identity, org, ["org_admin"])
        vendor_manager = await make_user(identity, vendor, ["vendor_manager"])
        worker = await make_user(identity, vendor, [], password=None)
        return Seeded(admin.email, vendor_slug, vendor_manager.email, str(worker.id))


class _Api:
    """The running app over schemathesis' in-process client, for seeding through the public routes."""

    def __init__(self, http: requests.Session) -> None:
        self.http = http

    def call(self, method: str, path: str, token: str, expect: int, headers: dict[str, str] | None = None,
             **kw: Any) -> Any:
        response = self.http.request(method, path, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                                     **kw)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json()

    def login(self, email: str) -> str:
        response = self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]


def _seed_resources(api: _Api, seeded: Seeded, admin: str, labels: list[str]) -> dict[str, dict[str, str]]:
    """A fresh resource of each kind an operation's path names, so that no operation can starve another."""
    vendor_manager = api.login(seeded.vendor_manager_email)

    def project() -> str:
        return api.call("POST", "/api/v1/projects", admin, 201,
                        json={"name": unique("fuzz"), "label_schema": TEXT_SCHEMA})["id"]

    def grant() -> str:
        return api.call("POST", "/api/v1/grants", admin, 201, json={
            "vendor": seeded.vendor_slug, "project_ids": [project()], "scopes": ["tasks:lease"]})["id"]

    media_project = project()
    imported = project()
    op = api.call("POST", f"/api/v1/projects/{imported}/imports", admin, 202,
                  data=b'{"text": "one"}\n{"text": "two"}\n', headers={"Content-Type": "application/x-ndjson"})
    # long-poll: the status route answers as soon as the import ends
    status = api.call("GET", f"/api/v1/imports/{op['id']}", admin, 200, params={"wait": 30})
    assert status["status"] == "succeeded", status
    tasks = api.call("GET", f"/api/v1/projects/{imported}/tasks", admin, 200)["items"]
    assert tasks, "the seeding import created no tasks"

    ids: dict[str, dict[str, str]] = {}
    for label in labels:
        path = label.split(" ", 1)[1]
        chosen: dict[str, str] = {}
        if "{project_id}" in path:
            chosen["project_id"] = project()
        if "{user_id}" in path:
            chosen["user_id"] = api.call("POST", "/api/v1/users", admin, 201, json={
                "email": f"{unique('fuzz')}@example.test", "roles": []})["id"]
        if "{grant_id}" in path:
            chosen["grant_id"] = grant()
        if "{token_id}" in path:
            chosen["token_id"] = api.call("POST", f"/api/v1/grants/{chosen['grant_id']}/tokens", vendor_manager,
                                          201, json={"worker_id": seeded.worker_id, "name": "fuzz"})["id"]
        if "{media_id}" in path:
            content = f"media for {label} {secrets.token_hex(4)}\n".encode()  # distinct: no deduplication
            chosen["media_id"] = api.call("POST", f"/api/v1/projects/{media_project}/media", admin, 201,
                                          files={"file": ("fuzz.txt", content, "text/plain")})["id"]
        if "{task_id}" in path:
            chosen["task_id"] = tasks[0]["id"]
        if "{op_id}" in path:
            chosen["op_id"] = op["id"]
        unknown = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")} - set(chosen)
        assert not unknown, f"{label}: add a seeded {unknown} to _seed_resources in {__name__}"
        ids[label] = chosen
    return ids


@pytest.fixture(scope="module")
def target(infrastructure: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    # S3 storage, so that importing media by reference is served too (without an endpoint it is a 503 by design);
    # tokens that outlive the run, however many examples it is given
    settings = make_settings(infrastructure, tmp_path_factory.mktemp("fuzz"), **FAST,
                             s3_endpoint=infrastructure["s3_endpoint"], s3_access_key=S3_ACCESS_KEY,
                             s3_secret_key=S3_SECRET_KEY, s3_bucket=f"quorum-{secrets.token_hex(4)}",
                             access_token_ttl_seconds=3600)
    # an event loop of its own, in its own thread: pytest-asyncio keeps the session's loop in this one
    with start_blocking_portal() as portal:
        seeded = portal.call(_seed_people, settings)
    app = create_app(settings, run_background=False)
    try:
        # entering the client starts the app's lifespan on schemathesis' event-loop thread, where it stays
        # (connections included) for every generated request
        with asgi.get_client(app) as http:
            served = http.get(OPENAPI)
            assert served.status_code == 200 and served.json() == json.loads(json.dumps(DOCUMENT)), \
                "the app serves another OpenAPI document than the one the operations were collected from"
            api = _Api(http)
            labels = [result.ok().label for result in schema.get_all_operations()]
            fuzz = Target(app)
            # one session per caller and operation: a fuzzed logout ends only its own
            emails = {"org_admin": seeded.admin_email, "vendor_manager": seeded.vendor_manager_email}
            for caller in CALLERS:
                for label in labels:
                    fuzz.tokens[caller, label] = api.login(emails[caller])
            fuzz.path_ids = _seed_resources(api, seeded, api.login(seeded.admin_email), labels)
        yield fuzz
    finally:
        asgi.shutdown_lifespans()


def problem_json_for_4xx(ctx: Any, response: Any, case: Any) -> None:
    """RFC 9457: a client error is `application/problem+json` whose `status` is the response's."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, \
        f"{response.status_code} answered as {content_type!r}, not {PROBLEM_JSON}: {response.text[:300]}"
    if case.method.upper() == "HEAD":
        return  # headers only
    body = json.loads(response.content)
    assert isinstance(body, dict) and body.get("status") == response.status_code and body.get("title"), \
        f"problem document without a matching status and a title: {body}"


@schema.parametrize()
@pytest.mark.parametrize("caller", CALLERS)
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
def test_api_never_answers_5xx(case: Any, caller: str, target: Target) -> None:
    path = case.meta.components.get("path") if case.meta is not None else None
    if path is not None and path.mode is GenerationMode.POSITIVE:  # a valid path: make it name real resources
        case.path_parameters = {**case.path_parameters, **target.path_ids[case.operation.label]}
    token = target.tokens[caller, case.operation.label]
    response = case.call(app=target.app, headers={"Authorization": f"Bearer {token}"})
    case.validate_response(response, checks=[not_a_server_error, problem_json_for_4xx])
