"""What every aggregation method returns: per-task posteriors and per-worker quality."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .matrix import AnswerMatrix

# A worker below this spammer score (Raykar & Yu; 0 = labels independent of the truth, 1 = perfect or
# perfectly flipped) is flagged as a spammer once they have MIN_LABELS_FOR_FLAGS labels.
SPAMMER_THRESHOLD = 0.1
MIN_LABELS_FOR_FLAGS = 5
# Adversarial: expected accuracy this far below chance (1/K), i.e. systematically wrong, not just noisy.
ADVERSARIAL_MARGIN = 0.1


def spammer_score(confusion: np.ndarray) -> np.ndarray:
    """Raykar & Yu (JMLR 2012) spammer score of (W, K, K) confusion matrices (rows = true class).

    S = 1/(K(K-1)) * sum_{c<c'} ||A[c,:] - A[c',:]||^2 — 0 when every row is the same (the label does not
    depend on the truth), 1 for a perfect (or perfectly permuted) worker; binary: (sensitivity+specificity-1)^2.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim == 2:
        return spammer_score(confusion[None])[0]
    k = confusion.shape[-1]
    if k < 2:
        return np.zeros(confusion.shape[0])
    # sum_{c<c'} ||a_c - a_c'||^2 = K * sum_c ||a_c||^2 - ||sum_c a_c||^2
    sq = (confusion ** 2).sum(axis=(1, 2))
    col = confusion.sum(axis=1)
    total = k * sq - (col ** 2).sum(axis=1)
    return np.clip(total / (k * (k - 1)), 0.0, 1.0)


def expected_accuracy(confusion: np.ndarray, class_prior: np.ndarray) -> np.ndarray:
    diag = np.diagonal(confusion, axis1=1, axis2=2)
    return diag @ class_prior


@dataclass
class WorkerQuality:
    worker_ids: np.ndarray
    n_labels: np.ndarray  # (W,)
    confusion: np.ndarray  # (W, K, K) rows = true class, P(label | truth)
    skill: np.ndarray  # (W,) method-specific scalar skill (accuracy for DS-type, alpha for GLAD, ...)
    accuracy: np.ndarray  # (W,) expected accuracy sum_k prior_k * confusion[k, k]
    agreement: np.ndarray  # (W,) fraction of the worker's labels equal to the consensus label
    spammer_score: np.ndarray  # (W,)
    is_spammer: np.ndarray  # (W,) bool
    is_adversarial: np.ndarray  # (W,) bool

    def row(self, i: int) -> dict[str, Any]:
        return {
            "worker": self.worker_ids[i].item() if hasattr(self.worker_ids[i], "item") else self.worker_ids[i],
            "n_labels": int(self.n_labels[i]),
            "skill": float(self.skill[i]),
            "accuracy": float(self.accuracy[i]),
            "agreement": float(self.agreement[i]),
            "spammer_score": float(self.spammer_score[i]),
            "is_spammer": bool(self.is_spammer[i]),
            "is_adversarial": bool(self.is_adversarial[i]),
            "confusion": self.confusion[i].tolist(),
        }


@dataclass
class AggregationResult:
    method: str
    task_ids: np.ndarray
    classes: list
    posterior: np.ndarray  # (n_tasks, K), rows sum to 1
    label_idx: np.ndarray  # (n_tasks,) argmax; ties -> smaller class index (majority vote: see voting.py)
    confidence: np.ndarray  # (n_tasks,) posterior of the chosen label
    n_labels: np.ndarray  # (n_tasks,)
    class_prior: np.ndarray  # (K,)
    workers: WorkerQuality
    n_iter: int = 0
    converged: bool = True
    log_likelihood: float = float("nan")
    params: dict[str, Any] = field(default_factory=dict)  # method-specific extras (GLAD task difficulty...)

    @property
    def labels(self) -> list:
        return [self.classes[i] for i in self.label_idx.tolist()]

    def label_of(self, task: Any) -> Any:
        i = int(np.flatnonzero(self.task_ids == task)[0])
        return self.classes[int(self.label_idx[i])]

    def task_row(self, i: int) -> dict[str, Any]:
        return {
            "task": self.task_ids[i].item() if hasattr(self.task_ids[i], "item") else self.task_ids[i],
            "label": self.classes[int(self.label_idx[i])],
            "confidence": float(self.confidence[i]),
            "n_labels": int(self.n_labels[i]),
            "posterior": dict(zip(self.classes, self.posterior[i].tolist())),
            "method": self.method,
        }


def argmax_first(posterior: np.ndarray) -> np.ndarray:
    """np.argmax picks the first maximum: ties go to the smaller class index (documented tie-break).

    A relative tolerance makes near-ties from float round-off resolve the same way on every platform.
    """
    top = posterior.max(axis=1, keepdims=True)
    return np.argmax(posterior >= top * (1 - 1e-12), axis=1).astype(np.int32)


def build_result(method: str, data: AnswerMatrix, posterior: np.ndarray, confusion: np.ndarray,
                 class_prior: np.ndarray, skill: np.ndarray | None = None, label_idx: np.ndarray | None = None,
                 **extra: Any) -> AggregationResult:
    """`label_idx`: the method's own choice (a method with another tie-break); default `argmax_first`."""
    posterior = data.clamp_gold(posterior)
    posterior = posterior / posterior.sum(axis=1, keepdims=True)
    label_idx = argmax_first(posterior) if label_idx is None else np.asarray(label_idx, dtype=np.int32)
    confidence = posterior[np.arange(data.n_tasks), label_idx]
    accuracy = expected_accuracy(confusion, class_prior)
    agree = (data.label_idx == label_idx[data.task_idx]).astype(np.float64)
    n_w = data.labels_per_worker
    agreement = np.bincount(data.worker_idx, weights=agree, minlength=data.n_workers) / np.maximum(n_w, 1)
    score = spammer_score(confusion)
    enough = n_w >= MIN_LABELS_FOR_FLAGS
    k = data.n_classes
    adversarial = enough & (accuracy < 1.0 / k - ADVERSARIAL_MARGIN)
    spammer = enough & (score < SPAMMER_THRESHOLD) & ~adversarial
    workers = WorkerQuality(worker_ids=data.worker_ids, n_labels=n_w, confusion=confusion,
                            skill=accuracy if skill is None else skill, accuracy=accuracy,
                            agreement=agreement, spammer_score=score, is_spammer=spammer,
                            is_adversarial=adversarial)
    return AggregationResult(method=method, task_ids=data.task_ids, classes=data.classes,
                             posterior=posterior, label_idx=label_idx, confidence=confidence,
                             n_labels=data.labels_per_task, class_prior=class_prior, workers=workers, **extra)


def confusion_from_posterior(data: AnswerMatrix, posterior: np.ndarray, smoothing: float = 0.0) -> np.ndarray:
    """Expected (W, K, K) confusion: counts[w, k, l] = sum_t posterior[t, k] * #(w gave l on t), row-normalised."""
    k = data.n_classes
    counts = (data.worker_label_by_task @ posterior).reshape(data.n_workers, k, k).transpose(0, 2, 1)
    counts = counts + smoothing
    rows = counts.sum(axis=2, keepdims=True)
    return np.where(rows > 0, counts / np.where(rows > 0, rows, 1), 1.0 / k)
