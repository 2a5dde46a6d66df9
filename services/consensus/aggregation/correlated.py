"""Correlated-worker Dawid-Skene (task subtypes, EBCC-style) — the default method.

Plain and regularised Dawid-Skene assume that, given the true class, workers err independently. On data where
workers make the *same* mistakes on the same hard tasks (e.g. ZenCrowd: many class-0 tasks draw several
class-1 votes), the independent model explains such a task better as class 1 and moves hundreds of them there.

Here each task has a class k and a latent subtype m (M per class, e.g. "easy 0" / "hard 0"), and every worker
has a confusion row per (class, subtype) (Li, Rubinstein & Cohn, "Exploiting worker correlation for label
aggregation in crowdsourcing", ICML 2019). A "hard class-0" subtype in which most workers answer 1 now
absorbs those tasks without pretending they are class 1. Fitted by variational Bayes (Dirichlet priors):

    worker row (k, m):  Dir(off + diag * [l == k] + pool_strength * crowd row (k, m))
    subtype | class:    Dir(subtype_prior / M)       class: Dir(class_prior)

The crowd row (all workers' counts pooled, re-estimated each iteration) shrinks a worker with few labels to
the crowd. The per-task answer is then the class marginal of the fitted model written as one K x K confusion
matrix per worker (subtypes averaged with their weights) — the same independent per-answer form as every
other method, so the cheap incremental update (`TaskPosteriorModel`) and the refit's re-scoring reproduce the
fit's labels exactly. Subtypes are seeded by each task's vote agreement, so a fit is deterministic.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from .em import e_step, vote_share_posterior
from .matrix import AnswerMatrix
from .result import AggregationResult, build_result

# Fixed hyper-parameters (chosen once over all benchmark datasets, not per dataset; see benchmarks/RESULTS.md).
CORR_SUBTYPES = 4
CORR_DIAG_PRIOR = 3.0
CORR_OFF_PRIOR = 0.5
CORR_POOL_STRENGTH = 5.0
CORR_SUBTYPE_PRIOR = 0.1
CORR_CLASS_PRIOR = 1.0
CORR_MAX_ITER = 20  # keeps a 1M-label refit to a few seconds; 20-60 iterations give the same verdicts


def _seed_subtypes(data: AnswerMatrix, m: int) -> np.ndarray:
    """(T, K*M) start: class from vote shares, subtype from how much the task's votes agree."""
    shares = vote_share_posterior(data)
    t, k = shares.shape
    agreement = shares.max(axis=1)
    grid = np.linspace(0.0, 1.0, m) if m > 1 else np.ones(1)
    sub = np.exp(-((agreement[:, None] - grid[None, :]) ** 2) / 0.05) + 1e-3
    sub /= sub.sum(axis=1, keepdims=True)
    start = (shares[:, :, None] * sub[:, None, :]).reshape(t, k * m)
    return start / np.clip(start.sum(axis=1, keepdims=True), 1e-300, None)


def _softmax_rows(log_joint: np.ndarray) -> np.ndarray:
    """Row softmax in place; for the K*M-wide state matrix numpy's row reductions beat a column loop."""
    top = log_joint.max(axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    log_joint -= top
    np.exp(log_joint, out=log_joint)
    log_joint /= log_joint.sum(axis=1, keepdims=True)
    return log_joint


def correlated_dawid_skene(data: AnswerMatrix, *, n_subtypes: int = CORR_SUBTYPES,
                           diag_prior: float = CORR_DIAG_PRIOR, off_prior: float = CORR_OFF_PRIOR,
                           pool_strength: float = CORR_POOL_STRENGTH, subtype_prior: float = CORR_SUBTYPE_PRIOR,
                           class_prior: float = CORR_CLASS_PRIOR, max_iter: int = CORR_MAX_ITER, tol: float = 1e-3,
                           prediction_weight: float = 1.0) -> AggregationResult:
    """Dawid-Skene with M latent subtypes per class (workers' errors correlated through the subtype).

    Stops when no task's class posterior moves by more than `tol` (or after `max_iter` iterations).
    """
    k, m = data.n_classes, max(int(n_subtypes), 1)
    s, w, t = k * m, data.n_workers, data.n_tasks
    class_of = np.repeat(np.arange(k), m)
    base = np.full((s, k), off_prior)
    base[np.arange(s), class_of] += diag_prior

    task_log_prior = data.task_log_prior(prediction_weight)
    state_log_prior = None if task_log_prior is None else np.repeat(task_log_prior, m, axis=1)
    gold_rows = np.flatnonzero(data.gold_idx >= 0) if data.has_gold else np.zeros(0, np.int64)
    gold_block = None
    if gold_rows.size:
        gold_block = np.where(class_of[None, :] == data.gold_idx[gold_rows][:, None], 0.0, -np.inf)

    def clamp(r: np.ndarray) -> np.ndarray:
        if gold_block is not None:
            g = np.exp(gold_block) * r[gold_rows]
            empty = g.sum(axis=1) <= 0
            g[empty] = np.exp(gold_block[empty])
            r[gold_rows] = g / g.sum(axis=1, keepdims=True)
        return r

    r = clamp(_seed_subtypes(data, m))
    z = r.reshape(t, k, m).sum(axis=2)
    alpha = base[None].repeat(w, axis=0)
    eta = np.full((k, m), subtype_prior / m)
    it, converged = 0, False
    for it in range(1, max_iter + 1):
        counts = (data.worker_label_by_task @ r).reshape(w, k, s).transpose(0, 2, 1)  # (W, S, K_label)
        crowd = counts.sum(axis=0) + base
        crowd /= crowd.sum(axis=1, keepdims=True)
        alpha = counts + base + pool_strength * crowd
        log_conf = digamma(alpha) - digamma(alpha.sum(axis=2, keepdims=True))
        per_state = r.sum(axis=0).reshape(k, m)
        eta = subtype_prior / m + per_state
        nu = class_prior + per_state.sum(axis=1)
        log_state = (digamma(eta) - digamma(eta.sum(axis=1, keepdims=True))
                     + (digamma(nu) - digamma(nu.sum()))[:, None]).reshape(s)
        log_joint = data.task_by_worker_label @ log_conf.transpose(0, 2, 1).reshape(w * k, s)
        log_joint += log_state
        if state_log_prior is not None:
            log_joint += state_log_prior
        if gold_block is not None:
            log_joint[gold_rows] += gold_block
        r = _softmax_rows(log_joint)
        r = clamp(r)
        last, z = z, r.reshape(t, k, m).sum(axis=2)
        if np.abs(z - last).max(initial=0.0) < tol:
            converged = True
            break

    # one K x K matrix per worker: subtypes of a class averaged with their fitted weights
    within = eta / eta.sum(axis=1, keepdims=True)
    conf_states = alpha / alpha.sum(axis=2, keepdims=True)
    confusion = (conf_states.reshape(w, k, m, k) * within[None, :, :, None]).sum(axis=2)
    prior = nu / nu.sum()
    log_confusion = np.log(np.clip(confusion, 1e-300, None))
    log_class_prior = np.log(prior)
    posterior, log_lik = e_step(data, log_confusion, log_class_prior, task_log_prior)
    return build_result("correlated_dawid_skene", data, posterior, confusion, prior, n_iter=it,
                        converged=converged, log_likelihood=log_lik,
                        params={"log_confusion": log_confusion, "log_class_prior": log_class_prior,
                                "n_subtypes": m})


__all__ = ["correlated_dawid_skene"]
