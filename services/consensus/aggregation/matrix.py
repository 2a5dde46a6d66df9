"""The common input of every categorical aggregation method: an `AnswerMatrix`.

Answers arrive as (task, worker, label) triples with arbitrary hashable ids. They are coded once into
contiguous np.int32 index arrays (`task_idx`, `worker_idx`, `label_idx`), so every method works on flat
vectors and sparse products and scales to millions of labels.

Repeated (task, worker) answers: kept by default (`duplicates="keep"`), each row counting as one piece of
evidence. That is what crowd-kit and the published benchmark files do, and it lets a benchmark reproduce
their figures. The service, where a re-submission replaces the previous annotation, should build with
`duplicates="last"` (keep the last row of each pair, in input order) or `"first"`.

Class order: `classes` are the distinct labels (plus any `classes=` given explicitly) sorted with `sorted()`
(numbers numerically, strings lexicographically; mixed types by `str`). Every tie in every method is broken
towards the smaller class index, i.e. the first class in this order — except plain majority vote, which by
default breaks ties by `first_seen_rank` (the order in which the classes first appear in the answer rows,
crowd-kit's MajorityVote rule; see voting.py).

Extra evidence:
- `gold`: task -> label. Methods clamp a gold task's posterior to its label (the task's answer is known) and
  fitted models learn worker parameters from it as from any observed truth.
- `predictions`: task -> probability vector over `classes` (a mapping class->prob or a sequence in class
  order), or a `(label, confidence)` pair which is spread as `confidence` on the label and the remainder
  uniformly. Methods use it as a per-task prior (log-prior weight `prediction_weight` in each method).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from shared.errors import ProblemError


class InvalidAnswers(ProblemError):
    status, type, title = 422, "invalid-answers", "Answers cannot be aggregated"


Duplicates = Literal["keep", "first", "last"]


def _sorted_classes(values: Iterable[Hashable]) -> list:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _factorize(values: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes in first-appearance order and the unique values, for arbitrary hashables."""
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind in "iub" and arr.ndim == 1:
        uniques, first_pos, inverse = np.unique(arr, return_index=True, return_inverse=True)
        order = np.argsort(first_pos, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return rank[inverse].astype(np.int32), uniques[order]
    table: dict[Hashable, int] = {}
    codes = np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int32,
                        count=len(values))
    uniques = np.empty(len(table), dtype=object)
    uniques[:] = list(table)
    return codes, uniques


@dataclass(eq=False)
class AnswerMatrix:
    task_idx: np.ndarray  # (n_answers,) int32 into task_ids
    worker_idx: np.ndarray  # (n_answers,) int32 into worker_ids
    label_idx: np.ndarray  # (n_answers,) int32 into classes
    task_ids: np.ndarray  # (n_tasks,) original ids, first-appearance order
    worker_ids: np.ndarray  # (n_workers,)
    classes: list  # sorted class values
    gold_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (n_tasks,) -1 = no gold
    prediction_prob: np.ndarray | None = None  # (n_tasks, K), rows of unpredicted tasks uniform
    has_prediction: np.ndarray | None = None  # (n_tasks,) bool

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_triples(
        cls,
        triples: Iterable[tuple[Hashable, Hashable, Hashable]] | None = None,
        *,
        tasks: Sequence[Hashable] | np.ndarray | None = None,
        workers: Sequence[Hashable] | np.ndarray | None = None,
        labels: Sequence[Hashable] | np.ndarray | None = None,
        classes: Sequence[Hashable] | None = None,
        gold: Mapping[Hashable, Hashable] | None = None,
        predictions: Mapping[Hashable, Any] | None = None,
        duplicates: Duplicates = "keep",
        extra_tasks: Iterable[Hashable] = (),
    ) -> AnswerMatrix:
        """Build from `triples` or from three parallel columns `tasks`, `workers`, `labels`.

        `classes` fixes the label schema (labels outside it raise `InvalidAnswers`; filter upstream).
        `extra_tasks` adds tasks that have no answers yet (they get the prior as posterior).
        """
        if triples is not None:
            rows = list(triples)
            tasks = [r[0] for r in rows]
            workers = [r[1] for r in rows]
            labels = [r[2] for r in rows]
        if tasks is None or workers is None or labels is None:
            raise InvalidAnswers("give either triples or tasks/workers/labels columns")
        n = len(tasks)
        if len(workers) != n or len(labels) != n:
            raise InvalidAnswers("tasks, workers and labels must have the same length")
        extra = list(extra_tasks)
        task_codes, task_ids = _factorize(list(tasks) + extra if extra else tasks)
        task_codes = task_codes[:n]
        worker_codes, worker_ids = _factorize(workers)
        label_codes, label_values = _factorize(labels)
        if classes is None:
            class_list = _sorted_classes(label_values.tolist())
        else:
            class_list = _sorted_classes(dict.fromkeys(classes))
            unknown = set(label_values.tolist()) - set(class_list)
            if unknown:
                raise InvalidAnswers(f"labels outside the class schema: {sorted(map(str, unknown))[:10]}")
        class_pos = {c: i for i, c in enumerate(class_list)}
        remap = np.array([class_pos[v] for v in label_values.tolist()], dtype=np.int32)
        label_idx = remap[label_codes] if n else np.zeros(0, np.int32)
        matrix = cls(task_idx=task_codes.astype(np.int32, copy=False),
                     worker_idx=worker_codes.astype(np.int32, copy=False),
                     label_idx=label_idx.astype(np.int32, copy=False),
                     task_ids=task_ids, worker_ids=worker_ids, classes=class_list)
        if duplicates != "keep":
            matrix = matrix.deduplicated(keep=duplicates)
        matrix.gold_idx = np.full(matrix.n_tasks, -1, dtype=np.int32)
        if gold:
            matrix = matrix.with_gold(gold)
        if predictions:
            matrix = matrix.with_predictions(predictions)
        return matrix

    @classmethod
    def from_codes(cls, task_idx: np.ndarray, worker_idx: np.ndarray, label_idx: np.ndarray,
                   n_classes: int | None = None) -> AnswerMatrix:
        """Build directly from integer codes (0..n-1); ids are the codes themselves. No copy of big arrays
        beyond the int32 cast."""
        t = np.asarray(task_idx, dtype=np.int32)
        w = np.asarray(worker_idx, dtype=np.int32)
        lab = np.asarray(label_idx, dtype=np.int32)
        k = int(n_classes if n_classes is not None else (lab.max() + 1 if lab.size else 1))
        n_tasks = int(t.max() + 1) if t.size else 0
        n_workers = int(w.max() + 1) if w.size else 0
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            raise InvalidAnswers("label codes outside 0..n_classes-1")
        return cls(task_idx=t, worker_idx=w, label_idx=lab, task_ids=np.arange(n_tasks),
                   worker_ids=np.arange(n_workers), classes=list(range(k)),
                   gold_idx=np.full(n_tasks, -1, dtype=np.int32))

    # ------------------------------------------------------------------ evidence
    def _task_positions(self, ids: Iterable[Hashable]) -> np.ndarray:
        pos = self.task_position
        return np.array([pos.get(t, -1) for t in ids], dtype=np.int64)

    @cached_property
    def task_position(self) -> dict[Hashable, int]:
        return {t: i for i, t in enumerate(self.task_ids.tolist())}

    @cached_property
    def worker_position(self) -> dict[Hashable, int]:
        return {w: i for i, w in enumerate(self.worker_ids.tolist())}

    def with_gold(self, gold: Mapping[Hashable, Hashable]) -> AnswerMatrix:
        """Gold labels for tasks present here; gold for unknown tasks is ignored (no answers to judge)."""
        class_pos = {c: i for i, c in enumerate(self.classes)}
        gold_idx = np.full(self.n_tasks, -1, dtype=np.int32)
        bad = [lab for lab in gold.values() if lab not in class_pos]
        if bad:
            raise InvalidAnswers(f"gold labels outside the class schema: {sorted(map(str, set(bad)))[:10]}")
        pos = self._task_positions(gold.keys())
        vals = np.array([class_pos[v] for v in gold.values()], dtype=np.int32)
        keep = pos >= 0
        gold_idx[pos[keep]] = vals[keep]
        return self._replace(gold_idx=gold_idx)

    def with_predictions(self, predictions: Mapping[Hashable, Any]) -> AnswerMatrix:
        k = self.n_classes
        class_pos = {c: i for i, c in enumerate(self.classes)}
        prob = np.full((self.n_tasks, k), 1.0 / k)
        has = np.zeros(self.n_tasks, dtype=bool)
        for task, value in predictions.items():
            i = self.task_position.get(task)
            if i is None:
                continue
            prob[i] = _prediction_vector(value, class_pos, k)
            has[i] = True
        return self._replace(prediction_prob=prob, has_prediction=has)

    def _replace(self, **changes: Any) -> AnswerMatrix:
        values = {f: getattr(self, f) for f in ("task_idx", "worker_idx", "label_idx", "task_ids",
                                                  "worker_ids", "classes", "gold_idx", "prediction_prob",
                                                  "has_prediction")}
        values.update(changes)
        return AnswerMatrix(**values)

    def deduplicated(self, keep: Literal["first", "last"] = "last") -> AnswerMatrix:
        key = self.task_idx.astype(np.int64) * max(self.n_workers, 1) + self.worker_idx
        if keep == "last":
            _, first_from_end = np.unique(key[::-1], return_index=True)
            rows = np.sort(key.size - 1 - first_from_end)
        else:
            _, rows = np.unique(key, return_index=True)
            rows = np.sort(rows)
        return self._replace(task_idx=self.task_idx[rows], worker_idx=self.worker_idx[rows],
                             label_idx=self.label_idx[rows])

    # ------------------------------------------------------------------ shapes and derived arrays
    @property
    def n_answers(self) -> int:
        return int(self.task_idx.size)

    @property
    def n_tasks(self) -> int:
        return int(self.task_ids.size)

    @property
    def n_workers(self) -> int:
        return int(self.worker_ids.size)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @cached_property
    def labels_per_task(self) -> np.ndarray:
        return np.bincount(self.task_idx, minlength=self.n_tasks).astype(np.int32)

    @cached_property
    def labels_per_worker(self) -> np.ndarray:
        return np.bincount(self.worker_idx, minlength=self.n_workers).astype(np.int32)

    @cached_property
    def vote_counts(self) -> np.ndarray:
        """(n_tasks, K) float counts of each label per task."""
        k = self.n_classes
        flat = np.bincount(self.task_idx.astype(np.int64) * k + self.label_idx, minlength=self.n_tasks * k)
        return flat.reshape(self.n_tasks, k).astype(np.float64)

    @cached_property
    def first_seen_rank(self) -> np.ndarray:
        """(K,) int64: 0 for the class of the first answer row, 1 for the next class to appear, ...; classes
        without any answer rank after every answered one, in class order.

        Scans geometrically growing blocks and stops once every class has been seen (usually in the first few
        rows), so it costs O(n) only when some class never appears.
        """
        k, n = self.n_classes, self.n_answers
        first = np.full(k, n, dtype=np.int64)
        start, block = 0, 1024
        while start < n and (first == n).any():
            chunk = self.label_idx[start:start + block]
            seen, pos = np.unique(chunk, return_index=True)
            new = first[seen] == n
            first[seen[new]] = start + pos[new]
            start += block
            block *= 2
        rank = np.empty(k, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(k)
        return rank

    @cached_property
    def task_by_worker_label(self) -> sp.csr_matrix:
        """Sparse (n_tasks, n_workers*K) counts: row t, column w*K+l = times w gave label l on t.

        Both EM steps of confusion-matrix models are one product with it (E: S @ log_conf, M: S.T @ q).
        """
        k = self.n_classes
        cols = self.worker_idx.astype(np.int64) * k + self.label_idx
        m = sp.csr_matrix((np.ones(self.n_answers), (self.task_idx, cols)),
                          shape=(self.n_tasks, self.n_workers * k))
        m.sum_duplicates()
        return m

    @cached_property
    def worker_label_by_task(self) -> sp.csr_matrix:
        return self.task_by_worker_label.T.tocsr()

    @property
    def has_gold(self) -> bool:
        return bool(self.gold_idx.size and (self.gold_idx >= 0).any())

    def task_log_prior(self, prediction_weight: float) -> np.ndarray | None:
        """Per-task additive log-prior from model predictions (None when there are none)."""
        if self.prediction_prob is None or prediction_weight == 0:
            return None
        return prediction_weight * np.log(np.clip(self.prediction_prob, 1e-6, 1.0))

    def clamp_gold(self, posterior: np.ndarray) -> np.ndarray:
        if not self.has_gold:
            return posterior
        rows = np.flatnonzero(self.gold_idx >= 0)
        posterior[rows] = 0.0
        posterior[rows, self.gold_idx[rows]] = 1.0
        return posterior


def _prediction_vector(value: Any, class_pos: dict, k: int) -> np.ndarray:
    if isinstance(value, Mapping):
        vec = np.zeros(k)
        for c, p in value.items():
            if c not in class_pos:
                raise InvalidAnswers(f"prediction for a class outside the schema: {c!r}")
            vec[class_pos[c]] = float(p)
    elif isinstance(value, tuple) and len(value) == 2 and value[0] in class_pos and not isinstance(value[1], (tuple, list)):
        label, conf = value
        conf = float(conf)
        if not 0.0 <= conf <= 1.0:
            raise InvalidAnswers(f"prediction confidence must be in [0, 1], got {conf}")
        vec = np.full(k, (1.0 - conf) / (k - 1) if k > 1 else 0.0)
        vec[class_pos[label]] = conf if k > 1 else 1.0
    else:
        vec = np.asarray(value, dtype=np.float64)
        if vec.shape != (k,):
            raise InvalidAnswers(f"a prediction vector needs {k} probabilities, got shape {vec.shape}")
    if (vec < 0).any() or vec.sum() <= 0:
        raise InvalidAnswers("prediction probabilities must be non-negative and not all zero")
    return vec / vec.sum()
