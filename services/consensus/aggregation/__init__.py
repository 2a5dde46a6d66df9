"""Label aggregation for the consensus service.

Categorical methods (this package's modules except `other_types`): every method takes an `AnswerMatrix` and
returns an `AggregationResult` (per-task posterior, label, confidence, n_labels; per-worker confusion, skill,
spammer score and adversarial flag). `METHODS` maps the names a project can choose to the functions;
`DEFAULT_METHOD` is the correlated-worker Dawid-Skene (task subtypes) with fixed hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from .correlated import correlated_dawid_skene
from .dawid_skene import bayesian_dawid_skene, dawid_skene, one_coin_dawid_skene
from .glad import glad
from .incremental import UNREACHABLE, TaskPosteriorModel, labels_needed
from .mace import mace
from .matrix import AnswerMatrix, InvalidAnswers
from .result import AggregationResult, WorkerQuality, spammer_score
from .voting import majority_vote, weighted_majority_vote

METHODS: dict[str, Callable[..., AggregationResult]] = {
    "majority_vote": majority_vote,
    "weighted_majority_vote": weighted_majority_vote,
    "dawid_skene": dawid_skene,
    "one_coin_dawid_skene": one_coin_dawid_skene,
    "glad": glad,
    "mace": mace,
    "bayesian_dawid_skene": bayesian_dawid_skene,
    "correlated_dawid_skene": correlated_dawid_skene,
}
DEFAULT_METHOD = "correlated_dawid_skene"


def aggregate(data: AnswerMatrix, method: str = DEFAULT_METHOD, **options) -> AggregationResult:
    try:
        fn = METHODS[method]
    except KeyError:
        raise InvalidAnswers(f"unknown aggregation method {method!r}; choose one of {sorted(METHODS)}") from None
    return fn(data, **options)


__all__ = [
    "AggregationResult", "AnswerMatrix", "DEFAULT_METHOD", "InvalidAnswers", "METHODS", "TaskPosteriorModel",
    "UNREACHABLE", "WorkerQuality", "aggregate", "bayesian_dawid_skene", "correlated_dawid_skene", "dawid_skene",
    "glad",
    "labels_needed", "mace", "majority_vote", "one_coin_dawid_skene", "spammer_score",
    "weighted_majority_vote",
]
