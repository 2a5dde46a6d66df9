"""Per-task consensus from the task's labels: the cheap incremental update run on every submission.

Categorical controls use the project's latest fitted worker model (per-annotator log confusion matrices,
the pooled confusion for annotators the fit has not seen, and the class prior, stored by the last refit),
evaluated by the aggregation package's `TaskPosteriorModel`: the task's posterior is one E-step over its
own labels, exactly what the full model says for that task given the fitted parameters. Before the first
fit a one-coin model with DEFAULT_ACCURACY stands in. Majority vote and weighted majority vote are the
Laplace-smoothed vote shares (vote mode). Reviews and a model's prediction enter as a prior; a gold label fixes
the answer. Other label types are aggregated from the task's labels alone with `aggregation.other_types`.

`labels_needed`: the aggregation package's estimate of how many more labels from a typical annotator lift
the leader to the project's target, capped by `max_labels` (vote methods: the exact vote count).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.consensus.aggregation import UNREACHABLE, TaskPosteriorModel, other_types
from services.consensus.aggregation import labels_needed as aggregation_labels_needed
from services.consensus.aggregation.matrix import _prediction_vector
from services.consensus.aggregation.voting import tie_broken_argmax

log = logging.getLogger("quorum.consensus.results")

DEFAULT_ACCURACY = 0.7  # one-coin accuracy assumed for everyone until the first fit
REVIEW_ACCURACY = 0.95  # a reviewer's accept / correction, as evidence about the truth
REJECTED_FACTOR = 0.2  # likelihood ratio a rejection applies to the rejected value
DEFAULT_PREDICTION_SCORE = 0.6  # a model prediction that came without a score: barely better than a guess
PREDICTION_WEIGHT = 1.0  # a prediction's prior counts once, like one more piece of evidence (refits likewise)

CATEGORICAL = "categorical"
MULTILABEL = "multilabel"
SPANS = "spans"
BOXES = "bbox"
NUMERIC = "numeric"
TEXT = "text"

LABEL_KINDS: dict[str, str] = {
    "single_choice": CATEGORICAL, "choice": CATEGORICAL, "choices": CATEGORICAL, "categorical": CATEGORICAL,
    "binary": CATEGORICAL, "label": CATEGORICAL, "classification": CATEGORICAL,
    "multi_choice": MULTILABEL, "multilabel": MULTILABEL, "multi_label": MULTILABEL,
    "spans": SPANS, "span": SPANS, "ner": SPANS, "labels": SPANS,
    "bbox": BOXES, "bboxes": BOXES, "boxes": BOXES, "bounding_box": BOXES, "rectangle": BOXES,
    "rectanglelabels": BOXES,
    "number": NUMERIC, "numeric": NUMERIC, "rating": NUMERIC,
    "text": TEXT, "free_text": TEXT, "textarea": TEXT,
}

VOTING_METHODS = {"majority_vote", "weighted_majority_vote"}


class InvalidValue(ValueError):
    """A label value that does not fit its control (wrong shape, outside the classes)."""


def label_kind(label_type: str) -> str | None:
    return LABEL_KINDS.get(label_type.lower())


def categorical_value(value: Any) -> Hashable:
    """One class from the shapes frontends send: "cat", 3, ["cat"], {"choice": "cat"}."""
    if isinstance(value, dict):
        for key in ("choice", "label", "value", "class"):
            if key in value:
                return categorical_value(value[key])
        raise InvalidValue("a choice object needs one of choice/label/value/class")
    if isinstance(value, list):
        if len(value) != 1:
            raise InvalidValue(f"a single choice needs exactly one value, got {len(value)}")
        return categorical_value(value[0])
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidValue(f"{type(value).__name__} is not a class value")


def check_value(kind: str, value: Any, classes: Sequence[Any] | None) -> None:
    """Raise InvalidValue if `value` cannot be a label of a control of this kind and these classes."""
    if kind == CATEGORICAL:
        v = categorical_value(value)
        if classes is not None and v not in classes:
            raise InvalidValue(f"{v!r} is not one of the control's classes")
    elif kind == MULTILABEL:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if classes is not None and v not in classes]
        if bad:
            raise InvalidValue(f"{bad[:5]!r} are not among the control's classes")
    elif kind == NUMERIC:
        number = value.get("value") if isinstance(value, dict) else value
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise InvalidValue("a numeric label needs a finite number")
    elif kind == TEXT:
        if not isinstance(value, str):
            raise InvalidValue("a text label needs a string")
    elif kind in (SPANS, BOXES):
        items = _parse_elements(kind, value)
        if classes is not None:
            bad = [getattr(i, "label", None) for i in items if getattr(i, "label", None) not in classes]
            if bad:
                raise InvalidValue(f"{bad[:5]!r} are not among the control's classes")


# ------------------------------------------------------------------------------------------ fitted model

@dataclass
class FittedModel:
    version: int
    method: str
    classes: list
    log_class_prior: np.ndarray  # (K,)
    default_log_confusion: np.ndarray  # (K, K)
    mean_accuracy: float
    worker_log_confusion: dict[str, np.ndarray] = field(default_factory=dict)
    worker_skill: dict[str, float] = field(default_factory=dict)
    # majority vote only: the classes in the order they first appeared in the project's labels (the fit's
    # tie-break, aggregation.voting); None for other methods
    tie_order: list | None = None


@dataclass
class TaskResult:
    label: Any
    confidence: float
    posterior: Any
    method: str
    n_labels: int
    low_confidence: bool
    labels_needed: int
    status: str
    model_version: int | None = None

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Review:
    verdict: str  # accepted | rejected | corrected
    annotation_value: Any  # the reviewed annotation's value (None if it has not arrived)
    corrected_value: Any = None


def one_coin_log_confusion(k: int, accuracy: float) -> np.ndarray:
    if k == 1:
        return np.zeros((1, 1))
    off = math.log((1.0 - accuracy) / (k - 1))
    table = np.full((k, k), off)
    np.fill_diagonal(table, math.log(accuracy))
    return table


def _softmax(log_joint: np.ndarray) -> np.ndarray:
    z = np.exp(log_joint - log_joint.max())
    return z / z.sum()


def task_model(method: str, classes: list, answers: Sequence[tuple[str, Any]],
               model: FittedModel | None) -> TaskPosteriorModel:
    """The aggregation package's per-task posterior model, restricted to this task's annotators."""
    k = len(classes)
    class_index = {c: i for i, c in enumerate(classes)}
    annotators = list(dict.fromkeys(a for a, _ in answers))
    vote_mode = method in VOTING_METHODS
    if vote_mode:
        known = {a: model.worker_skill[a] for a in annotators
                 if model is not None and method == "weighted_majority_vote" and a in model.worker_skill}
        default_weight = model.mean_accuracy if model is not None and method == "weighted_majority_vote" else 1.0
        weights = np.array([known[a] for a in known], dtype=np.float64)
        evidence = np.eye(k)[None] * weights[:, None, None] if known else np.zeros((0, k, k))
        return TaskPosteriorModel(classes, class_index, {a: i for i, a in enumerate(known)}, evidence,
                                  np.eye(k) * default_weight, np.zeros(k), method, vote_mode=True)
    if model is not None and _same_classes(model.classes, classes):
        known = {a: model.worker_log_confusion[a] for a in annotators if a in model.worker_log_confusion}
        evidence = (np.stack([np.asarray(v).T for v in known.values()]) if known else np.zeros((0, k, k)))
        return TaskPosteriorModel(classes, class_index, {a: i for i, a in enumerate(known)}, evidence,
                                  np.asarray(model.default_log_confusion).T.copy(),
                                  np.asarray(model.log_class_prior, dtype=np.float64), method)
    # No fit yet, or classes the fit has not seen: one-coin with the model's mean accuracy for everyone.
    accuracy = model.mean_accuracy if model is not None else DEFAULT_ACCURACY
    table = one_coin_log_confusion(k, min(max(accuracy, 1.0 / k + 1e-3), 0.999))
    return TaskPosteriorModel(classes, class_index, {}, np.zeros((0, k, k)), table.T.copy(),
                              np.full(k, -math.log(k)), method)


def review_prior(classes: list, reviews: Sequence[Review]) -> np.ndarray | None:
    """Reviewers' verdicts as a prior over the classes (None without usable reviews)."""
    k = len(classes)
    pos = {c: i for i, c in enumerate(classes)}
    log_evidence = np.zeros(k)
    used = False
    for review in reviews:
        truth = review.corrected_value if review.verdict == "corrected" else review.annotation_value
        if review.verdict in ("accepted", "corrected") and truth in pos:
            log_evidence += one_coin_log_confusion(k, REVIEW_ACCURACY)[:, pos[truth]]
            used = True
        elif review.verdict == "rejected" and review.annotation_value in pos:
            log_evidence[pos[review.annotation_value]] += math.log(REJECTED_FACTOR)
            used = True
    return _softmax(log_evidence) if used else None


def prediction_vector(class_index: dict[Hashable, int], value: Any, score: float | None, *,
                      task: str | None = None) -> np.ndarray | None:
    """A model's predicted class as a prior over the classes (one-coin: `score` on the value, the rest spread
    evenly over the other classes; no score counts as DEFAULT_PREDICTION_SCORE) - the vector the aggregation
    package builds for a (label, confidence) prediction, so refits and incremental updates use the same prior.
    None, with a log, for a value outside the classes (a schema change since the import)."""
    if value not in class_index:
        log.warning("ignoring a prediction outside the control's classes for task %s: %r", task, value)
        return None
    confidence = DEFAULT_PREDICTION_SCORE if score is None else min(max(float(score), 0.0), 1.0)
    return _prediction_vector((value, confidence), class_index, len(class_index))


def task_prior(classes: list, reviews: Sequence[Review], prediction: np.ndarray | None) -> np.ndarray | None:
    """The reviews' prior and the model's prediction, combined as independent evidence (None without either)."""
    prior = review_prior(classes, reviews)
    if prediction is None:
        return prior
    if prior is None:
        return prediction
    combined = prior * prediction
    return combined / combined.sum()


def categorical_posterior(method: str, classes: list, answers: Sequence[tuple[str, Any]],
                          model: FittedModel | None, *, gold: Any = None,
                          reviews: Sequence[Review] = (), prediction: np.ndarray | None = None) -> np.ndarray:
    """Posterior over `classes` (which must include every answered value) for one task; `prediction`: a prior
    over `classes` from a model (`prediction_vector`)."""
    tpm = task_model(method, classes, answers, model)
    return tpm.posterior(answers, gold=gold, prediction=task_prior(classes, reviews, prediction),
                         prediction_weight=PREDICTION_WEIGHT)


def _same_classes(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


def labels_needed(method: str, posterior: np.ndarray, target: float, n_labels: int, max_labels: int,
                  model: FittedModel | None) -> int:
    """More labels (agreeing with the leader, from a typical annotator) needed to reach `target`, at most
    max_labels - n_labels; when typical annotators cannot get there, as many as are still allowed."""
    room = max(max_labels - n_labels, 0)
    k = posterior.size
    if posterior.max() >= target or room == 0 or k < 2:
        return 0
    if method in VOTING_METHODS:
        # the vote posterior is (votes + 1) / (n + K): count how many more votes for the leader it takes
        votes = posterior * (n_labels + k) - 1.0
        top = int(np.argmax(posterior))
        for extra in range(1, room + 1):
            votes[top] += 1.0
            if (votes[top] + 1.0) / (n_labels + extra + k) >= target:
                return extra
        return room
    if model is not None and len(model.classes) == k:
        quality = np.exp(np.asarray(model.default_log_confusion))
    else:
        quality = model.mean_accuracy if model is not None else DEFAULT_ACCURACY
    needed = aggregation_labels_needed(posterior, target, quality, max_labels=room)
    return room if needed == UNREACHABLE else int(needed)


def _status(confidence: float, target: float, n_labels: int, max_labels: int) -> tuple[bool, str]:
    if confidence >= target:
        return False, "resolved"
    return True, ("needs_more_labels" if n_labels < max_labels else "insufficient")


def leading_class(method: str, classes: list, posterior: np.ndarray, model: FittedModel | None) -> int:
    """Index of the consensus class. Ties: majority vote as its last full fit broke them (classes in the order
    they first appeared in the project; classes that appeared only since, after those, in class order; before
    the first fit, class order); every other method the first class in sorted order, as `np.argmax`."""
    tie_order = model.tie_order if model is not None and method == "majority_vote" else None
    if not tie_order:
        return int(np.argmax(posterior))
    position = {c: i for i, c in enumerate(tie_order)}
    rank = np.array([position.get(c, len(tie_order) + i) for i, c in enumerate(classes)], dtype=np.int64)
    return int(tie_broken_argmax(np.asarray(posterior, dtype=np.float64), rank)[0])


def categorical_result(method: str, classes: list, answers: Sequence[tuple[str, Any]],
                       model: FittedModel | None, *, target: float, max_labels: int, gold: Any = None,
                       reviews: Sequence[Review] = (), prediction: np.ndarray | None = None) -> TaskResult:
    posterior = categorical_posterior(method, classes, answers, model, gold=gold, reviews=reviews,
                                      prediction=prediction)
    top = leading_class(method, classes, posterior, model)
    confidence = float(posterior[top])
    n = len(answers)
    low, status = _status(confidence, target, n, max_labels)
    needed = labels_needed(method, posterior, target, n, max_labels, model) if low else 0
    return TaskResult(label=classes[top] if n or gold is not None else None, confidence=confidence,
                      posterior=[[c, float(p)] for c, p in zip(classes, posterior)], method=method,
                      n_labels=n, low_confidence=low, labels_needed=needed, status=status,
                      model_version=model.version if model is not None else None)


# ------------------------------------------------------------------------------------------ other label types

def _parse_elements(kind: str, value: Any) -> list:
    items = value if isinstance(value, list) else [value]
    out = []
    try:
        for item in items:
            if kind == SPANS:
                if isinstance(item, dict):
                    out.append(other_types.Span(int(item["start"]), int(item["end"]), item.get("label")))
                else:
                    out.append(other_types._as_span(item))
            else:
                if isinstance(item, dict):
                    out.append(other_types.Box(float(item["x1"]), float(item["y1"]), float(item["x2"]),
                                               float(item["y2"]), item.get("label"),
                                               float(item.get("score", 1.0))))
                else:
                    out.append(other_types._as_box(item))
    except (KeyError, TypeError, ValueError, IndexError, other_types.InvalidAnnotation) as exc:
        raise InvalidValue(f"not a valid {kind} label: {exc}") from None
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        items = [jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def other_result(kind: str, answers: Sequence[tuple[str, Any]], *, target: float, max_labels: int,
                 gold: Any = None) -> TaskResult:
    by_annotator = dict(answers)
    if kind == MULTILABEL:
        agg = other_types.aggregate_multilabel({a: (v if isinstance(v, list) else [v])
                                                for a, v in by_annotator.items()})
    elif kind == SPANS:
        agg = other_types.aggregate_spans({a: _parse_elements(SPANS, v) for a, v in by_annotator.items()})
    elif kind == BOXES:
        agg = other_types.aggregate_boxes({a: _parse_elements(BOXES, v) for a, v in by_annotator.items()})
    elif kind == NUMERIC:
        agg = other_types.aggregate_numeric({a: float(v["value"] if isinstance(v, dict) else v)
                                             for a, v in by_annotator.items()})
    elif kind == TEXT:
        agg = other_types.aggregate_text({a: str(v) for a, v in by_annotator.items()})
    else:
        raise InvalidValue(f"unknown label kind {kind!r}")
    label, confidence = jsonable(agg.label), float(agg.confidence)
    if gold is not None:
        label, confidence = gold, 1.0
    n = len(answers)
    low, status = _status(confidence, target, n, max_labels)
    # No model of these types predicts how fast confidence grows: ask for one more label at a time.
    needed = 1 if low and n < max_labels else 0
    details = jsonable(dict(agg.details)) if agg.details else None
    return TaskResult(label=label, confidence=confidence, posterior=details, method=agg.method, n_labels=n,
                      low_confidence=low, labels_needed=needed, status=status)
