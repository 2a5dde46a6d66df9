"""Vectorised EM for models whose workers are described by a confusion matrix P(label | truth).

Dawid-Skene, one-coin Dawid-Skene, MACE and the Bayesian default all share this loop; they differ only in
how the (W, K, K) expected count tensor becomes confusion matrices (the M-step). With the sparse
task x (worker, label) count matrix S, one iteration is two sparse products:

    E-step  log P(z_t = k | answers) = log prior_k + (S @ log_conf)[t, k]      (+ model-prediction prior)
    M-step  counts[w, k, l] = (S.T @ q)[w*K + l, k]

so a refit over a million labels is a few milliseconds per iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .matrix import AnswerMatrix

EPS = 1e-10


@dataclass
class EMState:
    posterior: np.ndarray  # (T, K)
    confusion: np.ndarray  # (W, K, K)
    log_confusion: np.ndarray  # (W, K, K), may differ from log(confusion) for variational models
    class_prior: np.ndarray  # (K,)
    log_class_prior: np.ndarray
    n_iter: int
    converged: bool
    log_likelihood: float


def expected_counts(data: AnswerMatrix, posterior: np.ndarray) -> np.ndarray:
    """(W, K_true, K_label) expected counts sum_t posterior[t, k] * #(w gave l on t)."""
    k = data.n_classes
    flat = data.worker_label_by_task @ posterior  # (W*K_label, K_true)
    return flat.reshape(data.n_workers, k, k).transpose(0, 2, 1)


def e_step(data: AnswerMatrix, log_confusion: np.ndarray, log_class_prior: np.ndarray,
           task_log_prior: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Posterior (T, K) and the log marginal likelihood of the answers."""
    k = data.n_classes
    table = log_confusion.transpose(0, 2, 1).reshape(data.n_workers * k, k)  # row w*K+l, col true k
    log_joint = data.task_by_worker_label @ table
    log_joint += log_class_prior
    if task_log_prior is not None:
        log_joint += task_log_prior
    posterior, log_norm = softmax_rows(log_joint)
    posterior = data.clamp_gold(posterior)
    return posterior, log_norm


def softmax_rows(log_joint: np.ndarray) -> tuple[np.ndarray, float]:
    """Row softmax (in place) and the sum of row log-normalisers.

    For the usual handful of classes the row max/sum run as element-wise ufuncs over columns: numpy's
    axis=1 reductions over a (n, 3) array are several times slower, and scipy's logsumexp slower still.
    """
    k = log_joint.shape[1]
    if k <= 32:
        top = log_joint[:, 0].copy()
        for j in range(1, k):
            np.maximum(top, log_joint[:, j], out=top)
    else:
        top = log_joint.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    log_joint -= top[:, None]
    np.exp(log_joint, out=log_joint)
    if k <= 32:
        total = log_joint[:, 0].copy()
        for j in range(1, k):
            total += log_joint[:, j]
    else:
        total = log_joint.sum(axis=1)
    log_joint /= total[:, None]
    return log_joint, float(np.log(total).sum() + top.sum())


MStep = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(counts (W,K,K), posterior (T,K)) -> (confusion, log_confusion used by the next E-step)."""

ClassPriorStep = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""posterior (T,K) -> (class_prior, log_class_prior used by the next E-step)."""


def ml_class_prior(posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prior = np.clip(posterior.mean(axis=0), EPS, None)
    prior /= prior.sum()
    return prior, np.log(prior)


def crowdkit_objective(data: AnswerMatrix, posterior: np.ndarray, log_confusion: np.ndarray,
                       log_class_prior: np.ndarray) -> float:
    """crowd-kit 1.4.2's DawidSkene "ELBO" per answer: the class prior is counted once per *answer*, not once
    per task, so it is not monotone under EM and its early stop fires after 2-5 iterations. Only used for
    `stopping="crowdkit"` (reproducing crowd-kit's numbers)."""
    k = data.n_classes
    table = log_confusion.transpose(0, 2, 1).reshape(data.n_workers * k, k)
    joint = float(((data.task_by_worker_label @ table) * posterior).sum())
    joint += float((data.labels_per_task[:, None] * posterior * log_class_prior).sum())
    q = np.clip(posterior, EPS, None)
    entropy = float(-(q * np.log(q)).sum())
    return (joint + entropy) / max(data.n_answers, 1)


def run_em(data: AnswerMatrix, init_posterior: np.ndarray, m_step: MStep,
           class_prior_step: ClassPriorStep = ml_class_prior, *, max_iter: int = 100, tol: float = 1e-5,
           prediction_weight: float = 1.0, stopping: str = "likelihood") -> EMState:
    """EM from `init_posterior`; with gold labels also from a start that knows only the gold tasks.

    Label-switched solutions (e.g. a majority of systematically flipped workers) have the same likelihood on
    the non-gold tasks, so a majority-vote start stays in the wrong one; the gold tasks break the tie, and
    the run with the higher log-likelihood is kept.
    """
    state = _run_em_once(data, init_posterior, m_step, class_prior_step, max_iter=max_iter, tol=tol,
                         prediction_weight=prediction_weight, stopping=stopping)
    if data.has_gold:
        gold_only = np.zeros_like(init_posterior)
        gold_only = data.clamp_gold(gold_only)
        other = _run_em_once(data, gold_only, m_step, class_prior_step, max_iter=max_iter, tol=tol,
                             prediction_weight=prediction_weight, stopping=stopping)
        if other.log_likelihood > state.log_likelihood:
            state = other
    return state


def _run_em_once(data: AnswerMatrix, init_posterior: np.ndarray, m_step: MStep,
                 class_prior_step: ClassPriorStep, *, max_iter: int, tol: float, prediction_weight: float,
                 stopping: str) -> EMState:
    """EM from an initial posterior (M-step first).

    stopping="likelihood": stop when the per-answer log marginal likelihood changes by less than `tol`.
    stopping="crowdkit": stop when crowd-kit's objective (`crowdkit_objective`) rises by less than `tol`.
    Both stop after `max_iter` iterations at most.
    """
    task_log_prior = data.task_log_prior(prediction_weight)
    posterior = data.clamp_gold(init_posterior.copy())
    n = max(data.n_answers, 1)
    confusion, log_confusion = m_step(expected_counts(data, posterior), posterior)
    class_prior, log_class_prior = class_prior_step(posterior)
    last = -np.inf
    converged = False
    it = 0
    log_lik = float("nan")
    for it in range(1, max_iter + 1):
        posterior, log_lik = e_step(data, log_confusion, log_class_prior, task_log_prior)
        confusion, log_confusion = m_step(expected_counts(data, posterior), posterior)
        class_prior, log_class_prior = class_prior_step(posterior)
        if stopping == "crowdkit":
            value = crowdkit_objective(data, posterior, log_confusion, log_class_prior)
            if value - last < tol:
                converged = True
                break
        else:
            value = log_lik / n
            if abs(value - last) < tol:
                converged = True
                break
        last = value
    return EMState(posterior=posterior, confusion=confusion, log_confusion=log_confusion,
                   class_prior=class_prior, log_class_prior=log_class_prior, n_iter=it,
                   converged=converged, log_likelihood=log_lik)


def vote_share_posterior(data: AnswerMatrix) -> np.ndarray:
    """Unsmoothed majority-vote shares (crowd-kit's DS initialisation); a task without answers is uniform."""
    counts = data.vote_counts
    if data.prediction_prob is not None:
        counts = counts + data.prediction_prob * data.has_prediction[:, None]
    totals = counts.sum(axis=1, keepdims=True)
    k = data.n_classes
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), 1.0 / k)
