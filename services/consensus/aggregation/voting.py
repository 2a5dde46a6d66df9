"""Majority vote and weighted majority vote.

Tie-break, plain majority vote (`ties="first_seen"`, the default): an exact tie goes to the tied label that
appears first in the answer rows (`AnswerMatrix.first_seen_rank`; in the service, the project's labels in the
order they were stored). That is crowd-kit 1.4.2's MajorityVote under pandas >= 3.0: `value_counts()` groups
with `sort=False`, so `unstack("label")` lays the label columns out in first-appearance order and `idxmax`
takes the first of the tied columns (under pandas < 3.0 the groupby sorted the labels, i.e. `"class_order"`).
`ties="class_order"` keeps the older rule: the smaller class index (classes sorted: numbers numerically,
strings lexicographically), the 'MV det' rule of /work/shared/datasets/crowd/SOURCES.md.

Weighted majority vote always uses the class order (crowd-kit's Wawa sums skills with a sorted `groupby`).
Either way the tie stays visible: the chosen label's confidence is its tied vote share.

Confidence: the posterior of the chosen label from Laplace-smoothed vote shares,
(votes_k + 1) / (n + K) — one label out of two classes gives 2/3, not 1.0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .matrix import AnswerMatrix, InvalidAnswers
from .result import AggregationResult, build_result, confusion_from_posterior

VOTE_SMOOTHING = 1.0
TieRule = Literal["first_seen", "class_order"]
TIE_RULES = ("first_seen", "class_order")


def tie_rank(data: AnswerMatrix, ties: TieRule) -> np.ndarray:
    """(K,) rank per class; among tied labels the one with the smallest rank wins."""
    if ties == "first_seen":
        return data.first_seen_rank
    if ties == "class_order":
        return np.arange(data.n_classes, dtype=np.int64)
    raise InvalidAnswers(f"unknown tie rule {ties!r}; choose one of {list(TIE_RULES)}")


def tie_broken_argmax(scores: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """Row-wise argmax; among (relatively, to 1e-9) tied maxima the class with the smallest `rank` wins
    (no rank: the smaller class index)."""
    scores = np.atleast_2d(scores)
    top = scores.max(axis=1, keepdims=True)
    is_top = scores >= top - 1e-9 * np.maximum(np.abs(top), 1.0)
    if rank is None:
        return np.argmax(is_top, axis=1).astype(np.int32)
    masked = np.where(is_top, np.asarray(rank, dtype=np.int64)[None, :], np.iinfo(np.int64).max)
    return np.argmin(masked, axis=1).astype(np.int32)


def _vote_result(method: str, data: AnswerMatrix, scores: np.ndarray, weights_total: np.ndarray,
                 prediction_weight: float, rank: np.ndarray | None = None, skill: np.ndarray | None = None,
                 **params) -> AggregationResult:
    k = data.n_classes
    class_freq = np.bincount(data.label_idx, minlength=k).astype(np.float64)
    if data.prediction_prob is not None and prediction_weight:
        scores = scores + prediction_weight * data.prediction_prob * data.has_prediction[:, None]
        weights_total = weights_total + prediction_weight * data.has_prediction
    label_idx = tie_broken_argmax(scores, rank)
    # shares on the scale of raw label counts, so smoothing means "one extra pseudo-label per class"
    n = data.labels_per_task.astype(np.float64)
    scale = np.where(weights_total > 0, n / np.where(weights_total > 0, weights_total, 1), 0.0)
    posterior = scores * scale[:, None] + VOTE_SMOOTHING
    posterior /= posterior.sum(axis=1, keepdims=True)
    posterior = data.clamp_gold(posterior)
    gold_rows = data.gold_idx >= 0
    label_idx = np.where(gold_rows, data.gold_idx, label_idx).astype(np.int32)
    class_prior = (class_freq + 1) / (class_freq.sum() + k)
    # worker quality against the hard consensus: smoothed vote shares are too soft to show who disagrees
    hard = np.zeros_like(posterior)
    hard[np.arange(data.n_tasks), label_idx] = 1.0
    confusion = confusion_from_posterior(data, hard, smoothing=0.5)
    if rank is not None:
        params["tie_rank"] = np.asarray(rank, dtype=np.int64)
    return build_result(method, data, posterior, confusion, class_prior, skill=skill, label_idx=label_idx,
                        params=params)


def majority_vote(data: AnswerMatrix, *, prediction_weight: float = 1.0,
                  ties: TieRule = "first_seen") -> AggregationResult:
    """One label, one vote. A model prediction counts as `prediction_weight` fractional votes.

    `ties`: "first_seen" (default; crowd-kit's rule, see the module docstring) or "class_order".
    """
    rank = tie_rank(data, ties)
    return _vote_result("majority_vote", data, data.vote_counts, data.labels_per_task.astype(np.float64),
                        prediction_weight, rank=rank, ties=ties)


def weighted_majority_vote(data: AnswerMatrix, *, prediction_weight: float = 1.0,
                           weights: np.ndarray | None = None) -> AggregationResult:
    """Votes weighted by worker skill (Wawa-style).

    Skill = smoothed accuracy (agree + 1) / (n + 2) of the worker against the truth where it is known (gold
    tasks) and against the leave-one-out majority vote of the other workers elsewhere — leaving the worker's
    own vote out stops a prolific worker from agreeing with themself. Pass `weights` (per worker) to skip
    the estimate.
    """
    k = data.n_classes
    if weights is None:
        counts = data.vote_counts
        own = np.zeros((data.n_answers, k))
        own[np.arange(data.n_answers), data.label_idx] = 1.0
        others = counts[data.task_idx] - own
        has_others = others.sum(axis=1) > 0
        reference = tie_broken_argmax(others)
        gold_of_answer = data.gold_idx[data.task_idx] if data.has_gold else np.full(data.n_answers, -1)
        reference = np.where(gold_of_answer >= 0, gold_of_answer, reference)
        judged = has_others | (gold_of_answer >= 0)
        agree = ((data.label_idx == reference) & judged).astype(np.float64)
        n_judged = np.bincount(data.worker_idx, weights=judged.astype(np.float64), minlength=data.n_workers)
        n_agree = np.bincount(data.worker_idx, weights=agree, minlength=data.n_workers)
        weights = (n_agree + 1.0) / (n_judged + 2.0)
    weights = np.asarray(weights, dtype=np.float64)
    wl = weights[data.worker_idx]
    flat = np.bincount(data.task_idx.astype(np.int64) * k + data.label_idx, weights=wl,
                       minlength=data.n_tasks * k)
    scores = flat.reshape(data.n_tasks, k)
    totals = np.bincount(data.task_idx, weights=wl, minlength=data.n_tasks)
    return _vote_result("weighted_majority_vote", data, scores, totals, prediction_weight, skill=weights,
                        worker_weights=weights)
