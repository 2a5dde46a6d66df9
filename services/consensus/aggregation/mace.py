"""MACE (Hovy et al., NAACL 2013): each worker either knows the answer (probability theta_w) or spams,
drawing a label from their own strategy xi_w. Confusion: P(l | k) = theta_w [l == k] + (1 - theta_w) xi_w[l].

Defaults follow crowd-kit's MACE: variational Bayes with Beta(0.5, 0.5) on theta and Dirichlet(10) on xi,
uniform class prior, 50 iterations per restart, random initialisation uniform(1, 2.5) normalised, keep the
restart with the best marginal likelihood. The expected counts come from the shared (W, K, K) tensor of
`em.expected_counts`, so one iteration is two sparse products.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from .em import e_step, expected_counts
from .matrix import AnswerMatrix
from .result import AggregationResult, build_result


def _mace_log_confusion(know: np.ndarray, spam: np.ndarray, strategy: np.ndarray) -> np.ndarray:
    k = strategy.shape[1]
    conf = spam[:, None, None] * strategy[:, None, :] + know[:, None, None] * np.eye(k)[None]
    return np.log(np.clip(conf, 1e-300, None)), conf


def _uniform_start(seed: int, shape: tuple[int, int], noise: float) -> np.ndarray:
    x = np.random.RandomState(seed).uniform(size=shape) * (1.0 + noise) + 1.0
    return x / x.sum(axis=1, keepdims=True)


def mace(data: AnswerMatrix, *, n_restarts: int = 10, n_iter: int = 50, method: str = "vb",
         alpha: float = 0.5, beta: float = 0.5, strategy_prior: float = 10.0, smoothing: float | None = None,
         default_noise: float = 0.5, random_state: int = 0, prediction_weight: float = 1.0) -> AggregationResult:
    k = data.n_classes
    n_w_labels = data.labels_per_worker.astype(np.float64)
    smoothing = 0.01 / k if smoothing is None else smoothing
    log_class_prior = np.full(k, -np.log(k))
    task_log_prior = data.task_log_prior(prediction_weight)

    def m_step(q: np.ndarray, know: np.ndarray, spam: np.ndarray, strategy: np.ndarray):
        counts = expected_counts(data, q)  # (W, K_true, K_label)
        diag = np.diagonal(counts, axis1=1, axis2=2)  # (W, K): label == truth
        r_know = know[:, None] / (know[:, None] + spam[:, None] * strategy)
        knowing = (diag * r_know).sum(axis=1)
        spamming = n_w_labels - knowing
        strat_counts = counts.sum(axis=1) - diag * r_know
        if method == "vb":
            ks = np.stack([spamming + alpha, knowing + beta], axis=1)
            e = np.exp(digamma(ks) - digamma(ks.sum(axis=1, keepdims=True)))
            sc = strat_counts + strategy_prior
            new_strategy = np.exp(digamma(sc) - digamma(sc.sum(axis=1, keepdims=True)))
        else:
            ks = np.stack([spamming, knowing], axis=1) + smoothing
            e = ks / ks.sum(axis=1, keepdims=True)
            sc = strat_counts + smoothing
            new_strategy = sc / sc.sum(axis=1, keepdims=True)
        return e[:, 1], e[:, 0], new_strategy

    best = None
    for restart in range(max(n_restarts, 1)):
        # crowd-kit draws uniform(1, 2 + noise) from RandomState(random_state) for both arrays (so its
        # restarts repeat one start); ours use seed random_state + restart, the first start being crowd-kit's
        ks = _uniform_start(random_state + restart, (data.n_workers, 2), default_noise)
        spam, know = ks[:, 0], ks[:, 1]
        strategy = _uniform_start(random_state + restart, (data.n_workers, k), default_noise)
        log_conf, _ = _mace_log_confusion(know, spam, strategy)
        q, log_lik = e_step(data, log_conf, log_class_prior, task_log_prior)
        for _ in range(n_iter):
            know, spam, strategy = m_step(q, know, spam, strategy)
            log_conf, _ = _mace_log_confusion(know, spam, strategy)
            q, log_lik = e_step(data, log_conf, log_class_prior, task_log_prior)
        if best is None or log_lik > best[0]:
            best = (log_lik, q, know, spam, strategy)

    log_lik, q, know, spam, strategy = best
    competence = know / (know + spam)
    norm_strategy = strategy / strategy.sum(axis=1, keepdims=True)
    _, confusion = _mace_log_confusion(competence, 1 - competence, norm_strategy)
    return build_result("mace", data, q, confusion, np.exp(log_class_prior), skill=competence,
                        n_iter=n_iter, converged=True, log_likelihood=log_lik,
                        params={"competence": competence, "spam_strategy": norm_strategy})
