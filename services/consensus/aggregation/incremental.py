"""Cheap per-task update between full refits, and how many more labels a task needs.

On every `annotation.submitted` the service recomputes one task's posterior from that task's labels with the
worker parameters of the last full refit (`TaskPosteriorModel.from_result`): a few microseconds, no EM.
Workers the last refit has not seen get the population's average confusion matrix; labels outside the class
schema are ignored with a warning (they are rejected upstream).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .result import AggregationResult
from .voting import tie_broken_argmax

log = logging.getLogger("quorum.consensus.aggregation")

UNREACHABLE = -1
VOTE_METHODS = {"majority_vote", "weighted_majority_vote"}


@dataclass
class TaskPosteriorModel:
    classes: list
    class_index: dict[Hashable, int]
    worker_index: dict[Hashable, int]
    evidence: np.ndarray  # (W, K_label, K_true): per-answer log-likelihood (or vote weight in vote mode)
    default_evidence: np.ndarray  # (K_label, K_true) for workers unknown to the fit
    log_class_prior: np.ndarray  # (K,)
    method: str
    vote_mode: bool = False
    vote_smoothing: float = 1.0
    # (K,) majority vote's tie order (rank per class, smallest wins) recorded by the full fit; None: class order
    tie_rank: np.ndarray | None = None

    @classmethod
    def from_result(cls, result: AggregationResult) -> TaskPosteriorModel:
        k = len(result.classes)
        workers = result.workers
        class_index = {c: i for i, c in enumerate(result.classes)}
        worker_index = {w: i for i, w in enumerate(workers.worker_ids.tolist())}
        n_w = workers.n_labels.astype(np.float64)
        if result.method in VOTE_METHODS:
            weights = np.asarray(result.params.get("worker_weights", np.ones(len(n_w))), dtype=np.float64)
            evidence = np.repeat(np.eye(k)[None], len(n_w), axis=0) * weights[:, None, None]
            default = np.eye(k) * (float(np.average(weights, weights=n_w)) if n_w.sum() else 1.0)
            rank = result.params.get("tie_rank")
            return cls(result.classes, class_index, worker_index, evidence, default,
                       np.zeros(k), result.method, vote_mode=True,
                       tie_rank=None if rank is None else np.asarray(rank, dtype=np.int64))
        log_conf = result.params.get("log_confusion")
        if log_conf is None:
            log_conf = np.log(np.clip(workers.confusion, 1e-12, None))
        evidence = np.ascontiguousarray(log_conf.transpose(0, 2, 1))  # [w, label, truth]
        pooled = (workers.confusion * n_w[:, None, None]).sum(axis=0) if n_w.sum() else np.eye(k)
        pooled = (pooled + 1.0) / (pooled + 1.0).sum(axis=1, keepdims=True)
        log_prior = result.params.get("log_class_prior")
        if log_prior is None:
            log_prior = np.log(np.clip(result.class_prior, 1e-12, None))
        return cls(result.classes, class_index, worker_index, evidence, np.log(pooled).T.copy(),
                   np.asarray(log_prior, dtype=np.float64), result.method)

    def posterior(self, answers: Iterable[tuple[Hashable, Hashable]], *, gold: Hashable | None = None,
                  prediction: np.ndarray | None = None, prediction_weight: float = 1.0) -> np.ndarray:
        """Posterior over `classes` for one task from its (worker, label) answers."""
        k = len(self.classes)
        if gold is not None and gold in self.class_index:
            out = np.zeros(k)
            out[self.class_index[gold]] = 1.0
            return out
        ws: list[int] = []
        ls: list[int] = []
        unknown: list[int] = []
        wget, cget = self.worker_index.get, self.class_index.get
        for worker, label in answers:
            li = cget(label)
            if li is None:
                log.warning("ignoring a label outside the class schema: %r", label)
                continue
            wi = wget(worker)
            if wi is None:
                unknown.append(li)
            else:
                ws.append(wi)
                ls.append(li)
        acc = self.log_class_prior + self.evidence[ws, ls].sum(axis=0)
        if unknown:
            acc += self.default_evidence[unknown].sum(axis=0)
        n = len(ws) + len(unknown)
        if self.vote_mode:
            total_weight = float(self.evidence[ws, ls, ls].sum() + self.default_evidence[unknown, unknown].sum())
            if prediction is not None:
                acc = acc + prediction_weight * np.asarray(prediction, dtype=np.float64)
                total_weight += prediction_weight
            scale = n / total_weight if total_weight > 0 else 0.0
            post = acc * scale + self.vote_smoothing
            return post / post.sum()
        if prediction is not None:
            acc += prediction_weight * np.log(np.clip(np.asarray(prediction, dtype=np.float64), 1e-6, 1.0))
        acc -= acc.max()
        np.exp(acc, out=acc)
        return acc / acc.sum()

    def label(self, posterior: np.ndarray) -> tuple[Any, float]:
        """The leading class and its posterior; ties broken as the full fit breaks them (`tie_rank`)."""
        if self.tie_rank is None:
            i = int(np.argmax(posterior))
        else:
            i = int(tie_broken_argmax(np.asarray(posterior, dtype=np.float64), self.tie_rank)[0])
        return self.classes[i], float(posterior[i])

    def worker_confusion(self, worker: Hashable) -> np.ndarray:
        """(K_true, K_label) P(label | truth) used for `worker` (or the population for an unknown worker)."""
        wi = self.worker_index.get(worker)
        ev = self.default_evidence if wi is None else self.evidence[wi]
        if self.vote_mode:
            k = len(self.classes)
            return np.full((k, k), 1.0 / k)
        conf = np.exp(ev.T)
        return conf / conf.sum(axis=1, keepdims=True)

    def typical_confusion(self) -> np.ndarray:
        if self.vote_mode:
            k = len(self.classes)
            return np.full((k, k), 1.0 / k)
        conf = np.exp(self.default_evidence.T)
        return conf / conf.sum(axis=1, keepdims=True)


def _quality_matrix(worker_quality: float | np.ndarray, k: int) -> np.ndarray:
    q = np.asarray(worker_quality, dtype=np.float64)
    if q.ndim == 0:
        acc = float(np.clip(q, 1e-6, 1 - 1e-6))
        conf = np.full((k, k), (1.0 - acc) / max(k - 1, 1))
        np.fill_diagonal(conf, acc)
        return conf
    if q.shape != (k, k):
        raise ValueError(f"worker_quality must be an accuracy or a {k}x{k} confusion matrix")
    q = np.clip(q, 1e-6, None)
    return q / q.sum(axis=1, keepdims=True)


def labels_needed(posterior: np.ndarray | Mapping, target_confidence: float,
                  worker_quality: float | np.ndarray, *, max_labels: int = 50) -> int | np.ndarray:
    """How many more labels from a typical worker until the leading label reaches `target_confidence`.

    Assumes the current leader is the truth and moves the log-posterior by the expected log-likelihood of one
    label from a worker with `worker_quality` (an accuracy, or a K x K confusion matrix, rows = truth). 0 when
    the task is already confident; `UNREACHABLE` (-1) when such workers cannot get it there within
    `max_labels` (e.g. a worker no better than chance). Accepts one posterior (K,) or many (n, K).
    """
    post = np.atleast_2d(np.asarray(posterior, dtype=np.float64))
    single = np.asarray(posterior).ndim == 1
    n, k = post.shape
    conf = _quality_matrix(worker_quality, k)
    leader = np.argmax(post, axis=1)
    log_conf = np.log(conf)
    # drift[c, j] = E_{l ~ conf[c]} log conf[j, l]: expected log-likelihood of class j per label when c is true
    drift = conf @ log_conf.T
    logp = np.log(np.clip(post, 1e-300, None))
    step = drift[leader]
    needed = np.full(n, UNREACHABLE, dtype=np.int64)
    rows = np.arange(n)
    for m in range(max_labels + 1):
        cur = logp + m * step
        cur -= cur.max(axis=1, keepdims=True)
        p = np.exp(cur)
        p /= p.sum(axis=1, keepdims=True)
        reached = (p[rows, leader] >= target_confidence) & (needed == UNREACHABLE)
        needed[reached] = m
        if (needed != UNREACHABLE).all():
            break
    return int(needed[0]) if single else needed
