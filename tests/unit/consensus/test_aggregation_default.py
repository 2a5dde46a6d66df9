"""The default method's target on real data: never > 1 pp below majority vote, and better where DS breaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.consensus.aggregation import DEFAULT_METHOD, METHODS, TaskPosteriorModel, majority_vote
from services.consensus.aggregation.em import e_step
from services.consensus.aggregation.io import read_dataset

DATASETS = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "crowd"


def _accuracy(result, data, gold) -> float:
    gi = np.array([data.task_position[t] for t in gold])
    gl = np.array([data.classes.index(v) for v in gold.values()])
    return float((result.label_idx[gi] == gl).mean())


# (dataset, the default's floor): ZenCrowd is where every independent-worker DS falls 4-5 pp below MV
# (correlated mistakes); bluebirds is where symmetric one-coin models fall far below DS.
@pytest.mark.parametrize("name, floor", [("act_zencrowd_us", 0.90), ("bluebirds", 0.86), ("snow_wsd", 0.99)])
def test_default_never_more_than_one_point_below_majority_vote(name, floor):
    data, gold = read_dataset(DATASETS / name)
    default = _accuracy(METHODS[DEFAULT_METHOD](data), data, gold)
    mv = _accuracy(majority_vote(data), data, gold)
    assert default >= mv - 0.01, (name, default, mv)
    assert default >= floor, (name, default)


def test_default_beats_plain_and_regularised_ds_on_correlated_workers():
    data, gold = read_dataset(DATASETS / "act_zencrowd_us")
    default = _accuracy(METHODS[DEFAULT_METHOD](data), data, gold)
    for other in ("dawid_skene", "bayesian_dawid_skene"):
        assert default >= _accuracy(METHODS[other](data), data, gold) + 0.05, other


def test_default_is_reproduced_by_the_incremental_model():
    """Refits re-score tasks with one E-step on the stored K x K parameters and the cheap update uses the same
    per-answer form, so both must give exactly the fit's posterior."""
    data, _ = read_dataset(DATASETS / "bluebirds")
    result = METHODS[DEFAULT_METHOD](data)
    again = METHODS[DEFAULT_METHOD](data)
    np.testing.assert_array_equal(result.label_idx, again.label_idx)  # deterministic
    tpm = TaskPosteriorModel.from_result(result)
    posterior, _ = e_step(data, tpm.evidence.transpose(0, 2, 1), tpm.log_class_prior, None)
    np.testing.assert_allclose(posterior, result.posterior, atol=1e-9)
    answers: dict = {}
    for t, w, lab in zip(data.task_idx, data.worker_idx, data.label_idx):
        answers.setdefault(int(t), []).append((data.worker_ids[w], data.classes[lab]))
    for t in list(answers)[:20]:
        np.testing.assert_allclose(tpm.posterior(answers[t]), result.posterior[t], atol=1e-9)


def test_default_uses_gold_and_predictions():
    data, gold = read_dataset(DATASETS / "bluebirds")
    some = dict(list(gold.items())[:10])
    from services.consensus.aggregation import AnswerMatrix
    tasks, workers, labels = (data.task_ids[data.task_idx].tolist(), data.worker_ids[data.worker_idx].tolist(),
                              [data.classes[i] for i in data.label_idx])
    with_gold = AnswerMatrix.from_triples(tasks=tasks, workers=workers, labels=labels, gold=some)
    r = METHODS[DEFAULT_METHOD](with_gold)
    for t, v in some.items():
        i = with_gold.task_position[t]
        assert with_gold.classes[r.label_idx[i]] == v and r.confidence[i] == pytest.approx(1.0)
