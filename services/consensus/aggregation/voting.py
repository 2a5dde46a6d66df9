"""Majority vote and weighted majority vote.

Tie-break (both): the label with the most (weighted) votes wins; an exact tie goes to the smaller class index
(classes sorted: numbers numerically, strings lexicographically) — the 'MV det' rule of
/work/shared/datasets/crowd/SOURCES.md. crowd-kit's MajorityVote breaks ties by the column order pandas happens
to produce, so the two differ on tied tasks only (e.g. snow_rte: 65 tied gold tasks).

Confidence: the posterior of the chosen label from Laplace-smoothed vote shares,
(votes_k + 1) / (n + K) — one label out of two classes gives 2/3, not 1.0.
"""

from __future__ import annotations

import numpy as np

from .matrix import AnswerMatrix
from .result import AggregationResult, build_result, confusion_from_posterior

VOTE_SMOOTHING = 1.0


def _tie_broken_argmax(scores: np.ndarray, class_freq: np.ndarray | None = None) -> np.ndarray:
    top = scores.max(axis=1, keepdims=True)
    is_top = scores >= top - 1e-9 * np.maximum(np.abs(top), 1.0)
    return np.argmax(is_top, axis=1).astype(np.int32)


def _vote_result(method: str, data: AnswerMatrix, scores: np.ndarray, weights_total: np.ndarray,
                 prediction_weight: float, skill: np.ndarray | None = None, **params) -> AggregationResult:
    k = data.n_classes
    class_freq = np.bincount(data.label_idx, minlength=k).astype(np.float64)
    if data.prediction_prob is not None and prediction_weight:
        scores = scores + prediction_weight * data.prediction_prob * data.has_prediction[:, None]
        weights_total = weights_total + prediction_weight * data.has_prediction
    label_idx = _tie_broken_argmax(scores, class_freq)
    # shares on the scale of raw label counts, so smoothing means "one extra pseudo-label per class"
    n = data.labels_per_task.astype(np.float64)
    scale = np.where(weights_total > 0, n / np.where(weights_total > 0, weights_total, 1), 0.0)
    posterior = scores * scale[:, None] + VOTE_SMOOTHING
    posterior /= posterior.sum(axis=1, keepdims=True)
    # keep the documented tie-break visible in the posterior: the winner gets at least its tied share
    posterior = data.clamp_gold(posterior)
    gold_rows = data.gold_idx >= 0
    label_idx = np.where(gold_rows, data.gold_idx, label_idx).astype(np.int32)
    class_prior = (class_freq + 1) / (class_freq.sum() + k)
    # worker quality against the hard consensus: smoothed vote shares are too soft to show who disagrees
    hard = np.zeros_like(posterior)
    hard[np.arange(data.n_tasks), label_idx] = 1.0
    confusion = confusion_from_posterior(data, hard, smoothing=0.5)
    result = build_result(method, data, posterior, confusion, class_prior, skill=skill, params=params)
    # build_result re-derives the argmax; restore the frequency tie-break for exact ties
    result.label_idx = label_idx
    result.confidence = result.posterior[np.arange(data.n_tasks), label_idx]
    return result


def majority_vote(data: AnswerMatrix, *, prediction_weight: float = 1.0) -> AggregationResult:
    """One label, one vote. A model prediction counts as `prediction_weight` fractional votes."""
    scores = data.vote_counts
    return _vote_result("majority_vote", data, scores, data.labels_per_task.astype(np.float64),
                        prediction_weight)


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
        class_freq = np.bincount(data.label_idx, minlength=k).astype(np.float64)
        has_others = others.sum(axis=1) > 0
        reference = _tie_broken_argmax(others, class_freq)
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
