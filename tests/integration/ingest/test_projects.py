"""Projects: label schemas of every control type, versioning, validation, organisation scoping."""

from __future__ import annotations

import copy
from typing import Any

from tests.integration.ingest.conftest import TEXT_SCHEMA, IngestEnv

FULL_SCHEMA: dict[str, Any] = {
    "data": [
        {"name": "text", "type": "text"},
        {"name": "image", "type": "image", "required": False},
        {"name": "audio", "type": "audio", "required": False},
    ],
    "controls": [
        {"name": "topic", "type": "single_choice", "source": "text", "options": ["a", "b"]},
        {"name": "tags", "type": "multi_choice", "source": "text", "options": ["x", "y", "z"], "max_selected": 2},
        {"name": "ner", "type": "spans", "source": "text", "labels": ["PER", "LOC"]},
        {"name": "boxes", "type": "bbox", "source": "image", "labels": ["car"]},
        {"name": "shapes", "type": "polygon", "source": "image", "labels": ["road"], "min_points": 3},
        {"name": "speech", "type": "time_segments", "source": "audio", "labels": ["speaker"]},
        {"name": "transcript", "type": "text", "source": "audio", "max_length": 5000},
        {"name": "quality", "type": "rating", "source": "text", "min": 1, "max": 5, "step": 1},
        {"name": "score", "type": "number", "source": "text", "min": 0, "max": 1, "step": 0.1},
    ],
}


async def test_project_with_every_control_type_and_settings(ingest: IngestEnv) -> None:
    body = {"name": "everything", "label_schema": FULL_SCHEMA, "instructions": "Label carefully.", "overlap": 3,
            "consensus": {"method": "dawid_skene", "target_confidence": 0.9, "max_labels": 7},
            "pii": {"default": "pseudonymise", "entities": {"EMAIL": "mask", "IP_ADDRESS": "keep"},
                    "keep_original": True},
            "allowed_vendor_ids": ["7d8a2b4e-1c3f-4a5b-9c6d-0e1f2a3b4c5d"]}
    r = await ingest.client.post("/api/v1/projects", json=body, headers=await ingest.manager())
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["schema_version"] == 1 and project["overlap"] == 3
    assert [c["type"] for c in project["label_schema"]["controls"]] == [
        "single_choice", "multi_choice", "spans", "bbox", "polygon", "time_segments", "text", "rating", "number"]
    assert project["pii"] == {"enabled": True, "default": "pseudonymise",
                              "entities": {"EMAIL": "mask", "IP_ADDRESS": "keep"}, "keep_original": True}
    assert project["consensus"]["method"] == "dawid_skene"
    r = await ingest.client.get(f"/api/v1/projects/{project['id']}", headers=await ingest.annotator(project["id"]))
    assert r.status_code == 200 and r.json()["instructions"] == "Label carefully."


async def test_schema_change_creates_a_new_version_and_keeps_the_old(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    changed = copy.deepcopy(TEXT_SCHEMA)
    changed["controls"][0]["options"].append("mixed")
    headers = await ingest.manager()
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", json={"label_schema": changed}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["schema_version"] == 2
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", json={"name": "renamed"}, headers=headers)
    assert r.json()["schema_version"] == 2 and r.json()["name"] == "renamed"  # no schema change, no version
    r = await ingest.client.get(f"/api/v1/projects/{pid}/schema-versions", headers=headers)
    versions = r.json()
    assert [v["version"] for v in versions] == [1, 2]
    assert "mixed" not in versions[0]["label_schema"]["controls"][0]["options"]
    assert "mixed" in versions[1]["label_schema"]["controls"][0]["options"]
    # tasks record the version they were imported under
    op = await ingest.run_import(pid, b'{"text": "hello there"}\n')
    assert op["schema_version"] == 2
    r = await ingest.client.get(f"/api/v1/projects/{pid}/tasks", headers=headers)
    assert [t["schema_version"] for t in r.json()["items"]] == [2]


async def test_invalid_schemas_are_rejected_naming_the_problem(ingest: IngestEnv) -> None:
    headers = await ingest.manager()
    cases = [
        ({"data": [{"name": "text"}], "controls": [{"name": "c", "type": "single_choice", "source": "nope",
                                                   "options": ["a", "b"]}]}, "unknown data field"),
        ({"data": [{"name": "text"}], "controls": [{"name": "b", "type": "bbox", "source": "text",
                                                   "labels": ["car"]}]}, "cannot annotate"),
        ({"data": [{"name": "text"}], "controls": [{"name": "n", "type": "number", "source": "text",
                                                   "min": 5, "max": 1}]}, "max must be greater"),
        ({"data": [{"name": "text"}], "controls": [{"name": "c", "type": "single_choice", "source": "text",
                                                   "options": ["a", "a"]}]}, "unique"),
        ({"data": [{"name": "text"}], "controls": [{"name": "c", "type": "sliders", "source": "text"}]}, "sliders"),
    ]
    for schema, expected in cases:
        r = await ingest.client.post("/api/v1/projects", json={"name": "bad", "label_schema": schema},
                                     headers=headers)
        assert r.status_code == 422, (schema, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert expected in r.text, (expected, r.text)


async def test_projects_are_scoped_to_their_organisation(ingest: IngestEnv) -> None:
    pid = await ingest.create_project()
    stranger = await ingest.manager(org=ingest.other_org_id)
    assert (await ingest.client.get(f"/api/v1/projects/{pid}", headers=stranger)).status_code == 404
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", json={"name": "x"}, headers=stranger)
    assert r.status_code == 404
    r = await ingest.client.get("/api/v1/projects", headers=stranger)
    assert pid not in [p["id"] for p in r.json()["items"]]
    r = await ingest.client.get("/api/v1/projects", headers=await ingest.manager())
    assert pid in [p["id"] for p in r.json()["items"]]
    # an annotator of the project cannot change it or create projects
    annotator = await ingest.annotator(pid)
    assert (await ingest.client.patch(f"/api/v1/projects/{pid}", json={"name": "x"},
                                      headers=annotator)).status_code == 403
    r = await ingest.client.post("/api/v1/projects", json={"name": "x", "label_schema": TEXT_SCHEMA},
                                 headers=annotator)
    assert r.status_code == 403


async def _configured_events(ingest: IngestEnv, project_id: str) -> list[dict[str, Any]]:
    import json

    import sqlalchemy as sa

    from services.api.db import outbox

    async with ingest.ctx.session_factory() as session:
        rows = (await session.execute(sa.select(outbox.c.envelope).where(
            outbox.c.type == "project.configured").order_by(outbox.c.seq))).all()
    envelopes = [json.loads(raw) for (raw,) in rows]
    return [e for e in envelopes if e["project_id"] == project_id]


async def test_project_configuration_is_announced_to_the_other_services(ingest: IngestEnv) -> None:
    body = {"name": "announced", "label_schema": FULL_SCHEMA, "overlap": 3,
            "consensus": {"method": "glad", "target_confidence": 0.9, "max_labels": 7}}
    r = await ingest.client.post("/api/v1/projects", json=body, headers=await ingest.manager())
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    [created] = await _configured_events(ingest, pid)
    assert created["org_id"] == ingest.org_id and created["type"] == "project.configured"
    payload = created["payload"]
    assert payload["consensus_method"] == "glad" and payload["overlap"] == 3 and payload["max_labels"] == 7
    assert payload["controls"]["topic"] == {"label_type": "single_choice", "classes": ["a", "b"]}
    assert payload["controls"]["quality"] == {"label_type": "rating", "classes": None}

    headers = await ingest.manager()
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", json={"name": "renamed"}, headers=headers)
    assert r.status_code == 200 and len(await _configured_events(ingest, pid)) == 1  # nothing others act on
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", headers=headers, json={
        "consensus": {"method": "default", "target_confidence": 0.8, "max_labels": 5}})
    assert r.status_code == 200, r.text
    latest = (await _configured_events(ingest, pid))[-1]["payload"]
    assert latest["consensus_method"] == "default" and latest["schema_version"] == 1


async def test_unknown_consensus_method_is_a_clear_422(ingest: IngestEnv) -> None:
    body = {"name": "bad", "label_schema": FULL_SCHEMA, "consensus": {"method": "coin_flip"}}
    r = await ingest.client.post("/api/v1/projects", json=body, headers=await ingest.manager())
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "consensus" in r.text and "method" in r.text


async def test_text_with_nul_is_a_422_naming_the_field(ingest: IngestEnv) -> None:
    """PostgreSQL stores no NUL (U+0000) in text or jsonb; these answered 500 (found by
    tests/security/test_api_fuzz.py)."""
    headers = await ingest.manager()
    described = copy.deepcopy(TEXT_SCHEMA)
    described["controls"][0]["description"] = "pick one\x00"
    for body, pointer in [
        ({"name": "p\x00", "label_schema": TEXT_SCHEMA}, "/body/name"),
        ({"name": "p", "instructions": "read me\x00", "label_schema": TEXT_SCHEMA}, "/body/instructions"),
        ({"name": "p", "label_schema": described}, "/body/label_schema/controls/0/single_choice/description"),
    ]:
        r = await ingest.client.post("/api/v1/projects", json=body, headers=headers)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert [e["pointer"] for e in r.json()["errors"]] == [pointer] and "NUL" in r.text, r.text
    pid = await ingest.create_project(description="kept")
    r = await ingest.client.patch(f"/api/v1/projects/{pid}", json={"description": "\x00"}, headers=headers)
    assert r.status_code == 422 and [e["pointer"] for e in r.json()["errors"]] == ["/body/description"], r.text
    assert (await ingest.client.get(f"/api/v1/projects/{pid}", headers=headers)).json()["description"] == "kept"
