"""Dawid-Skene (full confusion matrices), one-coin Dawid-Skene and the Bayesian default (regularised DS)."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from .em import EPS, expected_counts, ml_class_prior, run_em, vote_share_posterior
from .matrix import AnswerMatrix
from .result import AggregationResult, build_result


def _normalise_rows(counts: np.ndarray) -> np.ndarray:
    k = counts.shape[-1]
    rows = counts.sum(axis=-1, keepdims=True)
    return np.where(rows > 0, counts / np.where(rows > 0, rows, 1), 1.0 / k)


def dawid_skene(data: AnswerMatrix, *, max_iter: int = 100, tol: float = 1e-5,
                prediction_weight: float = 1.0, stopping: str = "likelihood") -> AggregationResult:
    """Dawid & Skene (1979): one K x K confusion matrix per worker, maximum likelihood by EM.

    Same recipe as crowd-kit's DawidSkene: initialised from (unsmoothed) majority-vote shares, class prior =
    mean posterior, confusion entries floored at 1e-10 and no other smoothing — which is why it overfits
    workers with few labels (see `bayesian_dawid_skene`).

    Stopping: by default EM runs until the log-likelihood converges. crowd-kit stops on a non-monotone
    objective after 2-5 iterations; `stopping="crowdkit"` reproduces that for like-for-like benchmarks.
    """

    k = data.n_classes
    # labels a worker never gave get probability 0 (as in crowd-kit, which only keeps observed labels)
    used = (np.bincount(data.worker_idx.astype(np.int64) * k + data.label_idx,
                        minlength=data.n_workers * k) > 0).reshape(data.n_workers, 1, k)

    def m_step(counts: np.ndarray, _q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        conf = _normalise_rows(np.clip(counts, EPS, None) * used)
        return conf, np.log(np.clip(conf, EPS * EPS, None))

    state = run_em(data, vote_share_posterior(data), m_step, max_iter=max_iter, tol=tol,
                   prediction_weight=prediction_weight, stopping=stopping)
    return build_result("dawid_skene", data, state.posterior, state.confusion, state.class_prior,
                        n_iter=state.n_iter, converged=state.converged, log_likelihood=state.log_likelihood)


def _one_coin_confusion(accuracy: np.ndarray, k: int) -> np.ndarray:
    off = (1.0 - accuracy) / max(k - 1, 1)
    conf = np.repeat(off[:, None, None], k, axis=1).repeat(k, axis=2)
    idx = np.arange(k)
    conf[:, idx, idx] = accuracy[:, None]
    return conf


def one_coin_dawid_skene(data: AnswerMatrix, *, max_iter: int = 100, tol: float = 1e-5,
                         smoothing: float = 1.0, prediction_weight: float = 1.0) -> AggregationResult:
    """One-coin DS: worker w answers correctly with probability p_w, otherwise uniformly among the others.

    p_w = (expected correct + smoothing) / (n_w + 2 * smoothing) — a Beta(1+s, 1+s) MAP estimate, so a worker
    with one label gets a moderate skill instead of 0 or 1.
    """
    k = data.n_classes
    n_w = data.labels_per_worker.astype(np.float64)

    def m_step(counts: np.ndarray, _q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        correct = np.trace(counts, axis1=1, axis2=2)
        acc = np.clip((correct + smoothing) / (n_w + 2 * smoothing), 1e-6, 1 - 1e-6)
        conf = _one_coin_confusion(acc, k)
        return conf, np.log(conf)

    state = run_em(data, vote_share_posterior(data), m_step, max_iter=max_iter, tol=tol,
                   prediction_weight=prediction_weight)
    skill = np.diagonal(state.confusion, axis1=1, axis2=2)[:, 0]
    return build_result("one_coin_dawid_skene", data, state.posterior, state.confusion, state.class_prior,
                        skill=skill, n_iter=state.n_iter, converged=state.converged,
                        log_likelihood=state.log_likelihood)


# Fixed hyper-parameters of the default method (chosen once, not per dataset; see benchmarks/RESULTS.md).
BAYES_DIAG_PRIOR = 2.0
BAYES_OFF_PRIOR = 1.0
BAYES_POOL_STRENGTH = 20.0
BAYES_CLASS_PRIOR = 1.0


def bayesian_dawid_skene(data: AnswerMatrix, *, max_iter: int = 100, tol: float = 1e-6,
                         diag_prior: float = BAYES_DIAG_PRIOR, off_prior: float = BAYES_OFF_PRIOR,
                         pool_strength: float = BAYES_POOL_STRENGTH, class_prior: float = BAYES_CLASS_PRIOR,
                         variational: bool = True, prediction_weight: float = 1.0) -> AggregationResult:
    """Regularised DS — the default method.

    Each worker's confusion row k has a Dirichlet prior whose pseudo-counts are
        off_prior + diag_prior * [l == k] + pool_strength * pooled[k, l]
    where `pooled` is the confusion matrix of all workers together (re-estimated every iteration). A worker with
    few labels therefore looks like the crowd (one-coin-like behaviour), a worker with many labels gets their own
    full confusion matrix (DS behaviour). The class prior has a symmetric Dirichlet(1 + class_prior) prior.
    `variational=True` uses the variational-Bayes E[log theta] (IBCC-style) instead of MAP point estimates,
    which further discounts sparse workers.
    """
    k = data.n_classes
    base = np.full((k, k), off_prior) + np.eye(k) * diag_prior

    def m_step(counts: np.ndarray, _q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled = _normalise_rows(counts.sum(axis=0) + base)
        alpha = counts + base + pool_strength * pooled
        conf = alpha / alpha.sum(axis=2, keepdims=True)
        if variational:
            log_conf = digamma(alpha) - digamma(alpha.sum(axis=2, keepdims=True))
        else:
            log_conf = np.log(conf)
        return conf, log_conf

    def prior_step(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = q.sum(axis=0) + class_prior
        prior = a / a.sum()
        log_prior = digamma(a) - digamma(a.sum()) if variational else np.log(prior)
        return prior, log_prior

    state = run_em(data, vote_share_posterior(data), m_step, prior_step, max_iter=max_iter, tol=tol,
                   prediction_weight=prediction_weight)
    return build_result("bayesian_dawid_skene", data, state.posterior, state.confusion, state.class_prior,
                        n_iter=state.n_iter, converged=state.converged, log_likelihood=state.log_likelihood,
                        params={"log_confusion": state.log_confusion, "log_class_prior": state.log_class_prior})


__all__ = ["dawid_skene", "one_coin_dawid_skene", "bayesian_dawid_skene", "expected_counts", "ml_class_prior"]
