"""Model predictions as task priors: the one-coin vector, batch == per-task scoring, refits use them too."""

from __future__ import annotations

import logging
import random
import uuid

import numpy as np
import pytest

from services.consensus.aggregation.matrix import AnswerMatrix
from services.consensus.labels.service import ProjectLabels
from services.consensus.projects.service import ControlConfig, ProjectConfig
from services.consensus.refits.service import fit_control
from services.consensus.results import compute
from services.consensus.results.batch import compute_results
from services.consensus.results.compute import Review
from services.consensus.results.service import TaskEvidence, changed, compute_task
from tests.unit.consensus.test_batch_compute import _random_case

INDEX = {"bird": 0, "cat": 1, "dog": 2}


def test_a_prediction_is_a_one_coin_vector_over_the_classes() -> None:
    assert compute.prediction_vector(INDEX, "cat", 0.9).tolist() == pytest.approx([0.05, 0.9, 0.05])
    assert compute.prediction_vector(INDEX, "dog", None).tolist() == pytest.approx([0.2, 0.2, 0.6])
    assert compute.prediction_vector(INDEX, "bird", 0.0).tolist() == pytest.approx([0.0, 0.5, 0.5])
    assert compute.prediction_vector({"only": 0}, "only", 0.3).tolist() == [1.0]
    # the same vector the aggregation package builds for a (label, confidence) prediction
    matrix = AnswerMatrix.from_triples([("t", "w", "cat")], classes=list(INDEX), predictions={"t": ("cat", 0.9)})
    assert matrix.prediction_prob[0].tolist() == compute.prediction_vector(INDEX, "cat", 0.9).tolist()


def test_a_prediction_outside_the_classes_is_ignored_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="quorum.consensus.results"):
        assert compute.prediction_vector(INDEX, "horse", 0.9, task="t7") is None
    assert any("outside the control's classes" in r.getMessage() and "t7" in r.getMessage() for r in caplog.records)


def test_an_agreeing_prediction_raises_the_confidence_and_a_disagreeing_one_lowers_it() -> None:
    classes = ["cat", "dog"]
    index = {c: i for i, c in enumerate(classes)}

    def confidence(prediction: np.ndarray | None, reviews: list[Review] = ()) -> compute.TaskResult:
        return compute.categorical_result("bayesian_dawid_skene", classes, [("a", "cat")], None, target=0.8,
                                          max_labels=5, reviews=reviews, prediction=prediction)

    alone = confidence(None)
    agree = confidence(compute.prediction_vector(index, "cat", 0.9))
    disagree = confidence(compute.prediction_vector(index, "dog", 0.9))
    assert agree.label == "cat" and agree.confidence > alone.confidence
    assert disagree.label == "dog"  # a confident model outweighs one 70 % annotator
    # the prior combines with a review as independent evidence
    reviewed = confidence(compute.prediction_vector(index, "dog", 0.9), [Review("accepted", "cat")])
    assert reviewed.label == "cat" and reviewed.confidence < confidence(None, [Review("accepted", "cat")]).confidence
    # vote methods count a prediction as a fractional vote
    votes = compute.categorical_result("majority_vote", classes, [("a", "cat"), ("b", "dog")], None, target=0.8,
                                       max_labels=5, prediction=compute.prediction_vector(index, "dog", 0.9))
    assert votes.label == "dog"


def test_batch_scoring_with_predictions_matches_per_task_scoring() -> None:
    rng, nrng = random.Random(5), np.random.default_rng(5)
    checked = predicted = 0
    for _ in range(150):
        cfg, model, keys, evidence = _random_case(rng, nrng)
        observed = cfg.controls["label"].classes or ["x", "y", "z"]
        for key in keys:
            if rng.random() < 0.6:
                value = rng.choice([*observed, "horse"] if rng.random() < 0.1 else observed)
                evidence[key].prediction = (rng.choice([value, [value]]), rng.choice([None, 0.0, 0.55, 0.9, 1.0]))
        models = {(cfg.project_id, "label"): model} if model else {}
        got = {k: r for k, r, _ in compute_results({cfg.project_id: cfg}, keys, evidence, models)}
        for key in keys:
            try:
                expected = compute_task(cfg, key, evidence[key], model)
            except Exception:
                expected = None
            if expected is None or not changed(evidence[key], expected):
                assert key not in got
                continue
            result = got[key]
            checked += 1
            predicted += evidence[key].prediction is not None
            assert (result.label, result.status, result.labels_needed) == (expected.label, expected.status,
                                                                           expected.labels_needed)
            assert abs(result.confidence - expected.confidence) < 1e-12
            assert np.allclose([p for _, p in result.posterior], [p for _, p in expected.posterior], atol=1e-12)
    assert checked > 500 and predicted > 250


def _tied_project() -> ProjectLabels:
    """Five good annotators over 30 tasks, plus two tasks where two of them disagree."""
    rng = random.Random(1)
    tasks, annotators, values = [], [], []
    for t in range(30):
        truth = ["a", "b"][t % 2]
        for w in range(5):
            tasks.append(f"t{t}")
            annotators.append(f"w{w}")
            values.append(truth if rng.random() < 0.85 else ["a", "b"][1 - t % 2])
    for task in ("tie", "tie-predicted"):
        tasks += [task, task]
        annotators += ["w0", "w1"]
        values += ["a", "b"]
    n = len(tasks)
    return ProjectLabels(ids=list(range(1, n + 1)), tasks=tasks, annotators=annotators, values=values,
                         submitted_at=[None] * n, max_label_id=n)


@pytest.mark.parametrize("method", ["correlated_dawid_skene", "dawid_skene", "one_coin_dawid_skene", "glad",
                                    "mace", "majority_vote"])
def test_refits_use_predictions_as_priors(method: str) -> None:
    data = _tied_project()
    config = ProjectConfig(project_id=uuid.uuid4(), method=method, target_confidence=0.8, max_labels=5,
                           controls={"label": ControlConfig("single_choice", ["a", "b"])})
    plain = fit_control(config, "label", ["a", "b"], data, {}, [])
    before = plain.task_results["tie-predicted"][0]
    toward = "b" if before.label == "a" else "a"
    predictions = {"tie-predicted": (toward, 0.95), "t0": ("horse", 0.9)}  # a class outside the schema is ignored
    fit = fit_control(config, "label", ["a", "b"], data, {}, [], predictions)
    after = fit.task_results["tie-predicted"][0]
    assert after.label == toward and after.confidence > before.confidence
    assert fit.task_results["tie"][0].confidence < 0.8  # the same tie without a prediction stays unsure
    # the next incremental update of the task continues from the refit's result
    index = {"a": 0, "b": 1}
    incremental = compute.categorical_result(method, fit.classes, [("w0", "a"), ("w1", "b")], fit.model,
                                             target=0.8, max_labels=5,
                                             prediction=compute.prediction_vector(index, toward, 0.95))
    refit = fit.task_results["tie-predicted"][0]
    assert incremental.label == refit.label
    assert incremental.confidence == pytest.approx(refit.confidence, abs=1e-9)
