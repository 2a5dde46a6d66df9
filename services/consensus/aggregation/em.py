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
from scipy.special import logsumexp

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
    norm = logsumexp(log_joint, axis=1, keepdims=True)
    posterior = np.exp(log_joint - norm)
    posterior = data.clamp_gold(posterior)
    return posterior, float(norm.sum())


MStep = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(counts (W,K,K), posterior (T,K)) -> (confusion, log_confusion used by the next E-step)."""

ClassPriorStep = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""posterior (T,K) -> (class_prior, log_class_prior used by the next E-step)."""


def ml_class_prior(posterior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prior = np.clip(posterior.mean(axis=0), EPS, None)
    prior /= prior.sum()
    return prior, np.log(prior)


def run_em(data: AnswerMatrix, init_posterior: np.ndarray, m_step: MStep,
           class_prior_step: ClassPriorStep = ml_class_prior, *, max_iter: int = 100, tol: float = 1e-5,
           prediction_weight: float = 1.0) -> EMState:
    """EM from an initial posterior (M-step first). Stops when the per-answer log marginal likelihood
    improves by less than `tol`, or after `max_iter` iterations."""
    task_log_prior = data.task_log_prior(prediction_weight)
    posterior = data.clamp_gold(init_posterior.copy())
    n = max(data.n_answers, 1)
    last = -np.inf
    converged = False
    it = 0
    log_lik = float("nan")
    for it in range(1, max_iter + 1):
        confusion, log_confusion = m_step(expected_counts(data, posterior), posterior)
        class_prior, log_class_prior = class_prior_step(posterior)
        posterior, log_lik = e_step(data, log_confusion, log_class_prior, task_log_prior)
        if abs(log_lik - last) / n < tol:
            converged = True
            break
        last = log_lik
    confusion, log_confusion = m_step(expected_counts(data, posterior), posterior)
    class_prior, log_class_prior = class_prior_step(posterior)
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
