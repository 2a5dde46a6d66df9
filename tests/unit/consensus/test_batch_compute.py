"""The vectorised batch scoring used by the event handler gives exactly what per-task scoring gives."""

from __future__ import annotations

import random
import uuid

import numpy as np

from services.consensus.labels.service import TaskKey
from services.consensus.projects.service import ControlConfig, ProjectConfig
from services.consensus.results.batch import compute_results
from services.consensus.results.compute import FittedModel, Review
from services.consensus.results.service import TaskEvidence, changed, compute_task


def _random_case(rng: random.Random, nrng: np.random.Generator):  # noqa: ANN202
    pid = uuid.uuid4()
    classes = rng.choice([["cat", "dog", "bird"], ["a", "b"], [1, 2, 3, 4], None])
    method = rng.choice(["bayesian_dawid_skene", "dawid_skene", "majority_vote", "glad"])
    cfg = ProjectConfig(project_id=pid, method=method, target_confidence=rng.choice([0.8, 0.9, 0.6]),
                        max_labels=rng.choice([3, 5, 8]), controls={"label": ControlConfig("single_choice", classes)})
    observed = classes or ["x", "y", "z"]
    model, workers = None, {}
    if rng.random() < 0.6:
        model_classes = sorted(observed) if rng.random() < 0.8 else sorted(observed)[:-1] + ["zz"]
        km = len(model_classes)

        def log_confusion() -> np.ndarray:
            m = nrng.dirichlet(np.ones(km) * 0.5, size=km) + np.eye(km)
            return np.log(m / m.sum(1, keepdims=True))

        model = FittedModel(version=rng.randint(1, 9), method=method, classes=model_classes,
                            log_class_prior=np.log(nrng.dirichlet(np.ones(km))),
                            default_log_confusion=log_confusion(), mean_accuracy=rng.uniform(0.4, 0.95))
        workers = {f"w{i}": log_confusion().tolist() for i in range(8)}
    keys, evidence = [], {}
    for t in range(rng.randint(1, 25)):
        key = TaskKey(pid, f"t{t}", "label")
        keys.append(key)
        ev = TaskEvidence()
        for j, annotator in enumerate(rng.sample([f"w{i}" for i in range(12)], rng.randint(0, 6))):
            value = rng.choice(observed + (["odd"] if rng.random() < 0.05 else []))
            ev.answers.append((annotator, rng.choice([value, [value], {"choice": value}])))
            ev.max_label_id = max(ev.max_label_id, j + 1)
            if model is not None and annotator in workers:
                ev.worker_log_confusion[annotator] = workers[annotator]
                ev.worker_skill[annotator] = 0.5
        if rng.random() < 0.05:
            ev.gold = observed[0]
        if rng.random() < 0.05:
            ev.reviews.append(Review("accepted", observed[0]))
        if rng.random() < 0.2:
            ev.current = {"label": "x", "confidence": 0.5, "n_labels": 1, "status": "resolved", "labels_needed": 0,
                          "model_version": None, "method": method}
        evidence[key] = ev
    return cfg, model, keys, evidence


def test_batch_scoring_matches_per_task_scoring() -> None:
    rng, nrng = random.Random(3), np.random.default_rng(3)
    checked = 0
    for _ in range(150):
        cfg, model, keys, evidence = _random_case(rng, nrng)
        models = {(cfg.project_id, "label"): model} if model else {}
        got = {k: (r, m) for k, r, m in compute_results({cfg.project_id: cfg}, keys, evidence, models)}
        for key in keys:
            try:
                expected = compute_task(cfg, key, evidence[key], model)
            except Exception:  # per-task scoring refuses it; the batch must not emit a result either
                expected = None
            if expected is None or not changed(evidence[key], expected):
                assert key not in got
                continue
            result, max_label_id = got[key]
            checked += 1
            for field in ("method", "n_labels", "low_confidence", "labels_needed", "status", "model_version", "label"):
                assert getattr(result, field) == getattr(expected, field), field
            assert [c for c, _ in result.posterior] == [c for c, _ in expected.posterior]
            assert np.allclose([p for _, p in result.posterior], [p for _, p in expected.posterior], atol=1e-12)
            assert abs(result.confidence - expected.confidence) < 1e-12
            assert max_label_id == evidence[key].max_label_id
    assert checked > 500


def test_fast_consensus_updated_envelopes_match_the_validated_ones() -> None:
    import uuid

    from services.consensus.labels.service import TaskKey
    from services.consensus.projects.service import ProjectConfig
    from services.consensus.results.compute import TaskResult
    from services.consensus.results.service import Written, updated_envelopes, updated_event
    from shared.events.catalog import ConsensusUpdated
    from shared.events.envelope import Envelope

    project = uuid.uuid4()
    configs = {project: ProjectConfig(project_id=project, org_id=uuid.uuid4())}
    results = [TaskResult(label="cat", confidence=0.75, posterior=[["cat", 0.75], ["dog", 0.25]], method="dawid_skene",
                          n_labels=3, low_confidence=True, labels_needed=2, status="needs_more_labels",
                          model_version=4),
               TaskResult(label=3, confidence=1.0, posterior=[[3, 1.0]], method="majority_vote", n_labels=1,
                          low_confidence=False, labels_needed=0, status="resolved", model_version=None)]
    written = [Written(key=TaskKey(project, f"t{i}", "label"), result=r, version=i + 1, source="incremental")
               for i, r in enumerate(results)]
    fast = updated_envelopes(configs, written)
    for w, envelope in zip(written, fast, strict=True):
        slow = updated_event(configs[project], w).model_dump(mode="json")
        assert {k: v for k, v in envelope.items() if k not in ("id", "occurred_at")} == \
               {k: v for k, v in slow.items() if k not in ("id", "occurred_at")}
        parsed = Envelope.model_validate(envelope)  # the catalog's models accept it as it is
        assert ConsensusUpdated.model_validate(parsed.payload).model_dump(mode="json") == envelope["payload"]
    assert len({e["id"] for e in fast}) == 2
