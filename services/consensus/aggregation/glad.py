"""GLAD (Whitehill et al., NIPS 2009): worker ability alpha_w, task (log inverse) difficulty beta_t.

P(label = truth) = sigmoid(alpha_w * exp(beta_t)); wrong labels are spread uniformly over the K-1 others.
Same model, priors (alpha ~ N(1, 1), beta ~ N(1, 1)), uniform class prior, conjugate-gradient M-step (25
iterations, tol 1e-2) and stopping rule as crowd-kit's GLAD — but every E-step, objective and gradient is a
handful of bincounts over the answer arrays instead of pandas group-bys.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from .em import softmax_rows

from .matrix import AnswerMatrix
from .result import AggregationResult, build_result


def _log_sigmoids(ab: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    # log sigmoid(x) = -(max(-x, 0) + log1p(exp(-|x|))); log(1 - sigmoid(x)) = log sigmoid(x) - x
    log_right = -(np.maximum(-ab, 0.0) + np.log1p(np.exp(-np.abs(ab))))
    log_wrong = log_right - ab - np.log(max(k - 1, 1))
    return log_right, log_wrong


def glad(data: AnswerMatrix, *, max_iter: int = 100, tol: float = 1e-5, m_step_max_iter: int = 25,
         m_step_tol: float = 1e-2, alpha_prior_mean: float = 1.0, beta_prior_mean: float = 1.0,
         learn_class_prior: bool = False, prediction_weight: float = 1.0) -> AggregationResult:
    k = data.n_classes
    t_idx, w_idx, l_idx = data.task_idx, data.worker_idx, data.label_idx
    n_t, n_w = data.n_tasks, data.n_workers
    flat_tl = t_idx.astype(np.int64) * k + l_idx
    task_log_prior = data.task_log_prior(prediction_weight)
    log_class_prior = np.full(k, -np.log(k))
    alpha = np.full(n_w, 1.0)
    beta = np.full(n_t, 1.0)
    gold_rows = np.flatnonzero(data.gold_idx >= 0) if data.has_gold else None

    def e_step() -> tuple[np.ndarray, float]:
        ab = alpha[w_idx] * np.exp(beta[t_idx])
        log_right, log_wrong = _log_sigmoids(ab, k)
        base = np.bincount(t_idx, weights=log_wrong, minlength=n_t)
        extra = np.bincount(flat_tl, weights=log_right - log_wrong, minlength=n_t * k).reshape(n_t, k)
        log_joint = base[:, None] + extra + log_class_prior
        if task_log_prior is not None:
            log_joint += task_log_prior
        q, log_norm = softmax_rows(log_joint)
        if gold_rows is not None:
            q[gold_rows] = 0.0
            q[gold_rows, data.gold_idx[gold_rows]] = 1.0
        return q, log_norm

    def neg_q_and_grad(x: np.ndarray, q_obs: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = x[:n_w], x[n_w:]
        eb = np.exp(b)[t_idx]
        ab = a[w_idx] * eb
        log_right, log_wrong = _log_sigmoids(ab, k)
        value = float((q_obs * log_right + (1.0 - q_obs) * log_wrong).sum())
        value -= 0.5 * float(((a - alpha_prior_mean) ** 2).sum() + ((b - beta_prior_mean) ** 2).sum())
        resid = q_obs - np.exp(log_right)
        grad_a = np.bincount(w_idx, weights=resid * eb, minlength=n_w) - (a - alpha_prior_mean)
        grad_b = np.bincount(t_idx, weights=resid * ab, minlength=n_t) - (b - beta_prior_mean)
        return -value, -np.concatenate([grad_a, grad_b])

    q, log_lik = e_step()
    last = -np.inf
    converged = False
    it = 0
    n = max(data.n_answers, 1)
    for it in range(1, max_iter + 1):
        q, log_lik = e_step()
        if learn_class_prior:
            p = q.mean(axis=0) + 1e-10
            log_class_prior = np.log(p / p.sum())
        q_obs = q[t_idx, l_idx]
        res = minimize(neg_q_and_grad, np.concatenate([alpha, beta]), args=(q_obs,), jac=True, method="CG",
                       tol=m_step_tol, options={"maxiter": m_step_max_iter})
        alpha, beta = res.x[:n_w].copy(), res.x[n_w:].copy()
        value = -neg_q_and_grad(res.x, q_obs)[0] / n
        if value - last < tol:
            converged = True
            break
        last = value

    skill_right = expit(alpha * np.exp(np.median(beta) if n_t else beta_prior_mean))
    confusion = np.repeat(((1 - skill_right) / max(k - 1, 1))[:, None, None], k, axis=1).repeat(k, axis=2)
    confusion[:, np.arange(k), np.arange(k)] = skill_right[:, None]
    return build_result("glad", data, q, confusion, np.exp(log_class_prior), skill=alpha, n_iter=it,
                        converged=converged, log_likelihood=log_lik,
                        params={"alpha": alpha, "beta": beta, "task_difficulty": 1.0 / np.exp(beta)})
