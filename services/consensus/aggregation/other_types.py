"""Aggregation of non-categorical label types: multi-label, text spans, bounding boxes, numbers, free text.

Every aggregator takes one task's labels, keyed by annotator id, and returns an `Aggregate`: the consensus
`label`, a `confidence` in [0, 1], the number of labels it used and the method, plus method-specific `details`
(per-element confidences, supports, dispersion).

What "confidence" means per type (each is the honest quantity available for that type):
- multi-label: per label, the posterior that the decision (present / absent) is right under a one-coin
  model (each annotator correct on each label with probability `accuracy`); the task's confidence is the mean
  of those decision posteriors over the labels anybody chose.
- spans and boxes: per element, its support (fraction of the task's annotators voting for it); the task's
  confidence is the mean decisiveness (share of annotators on the winning side) over every candidate
  position / box cluster, so a box that one annotator in five drew and the others rejected counts as a
  confident rejection.
- numbers: the probability that the consensus lies within `tolerance` of the annotators' mean under a normal
  model with a robust scale (MAD), shrunk towards `prior_sd` by one pseudo-observation so that one label or
  three identical ones are not "certain".
- free text: the mean normalised-Levenshtein similarity of the consensus to the labels (0.5 for one label:
  nothing to compare with).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import expit, logit
from scipy.stats import norm

T = TypeVar("T")

# Default per-label accuracy of an annotator whose skill is unknown (one-coin model for multi-label).
DEFAULT_ANNOTATOR_ACCURACY = 0.75
# An element (label, span position, box) is kept when strictly more than this share of annotators support it.
MAJORITY = 0.5
# Boxes from different annotators are the same object when their IoU is at least this.
BOX_IOU_THRESHOLD = 0.5
# Huber's tuning constant (95 % efficiency at the normal) and the MAD -> sigma factor.
HUBER_C = 1.345
MAD_TO_SIGMA = 1.4826
TRIM_PROPORTION = 0.2
# Half a rating step: two ratings within this of each other are "the same answer".
DEFAULT_TOLERANCE = 0.5
SINGLE_TEXT_CONFIDENCE = 0.5


class InvalidAnnotation(ValueError):
    """A label of the wrong shape for its aggregator (box with x2 < x1, span with end < start, ...)."""


@dataclass(frozen=True)
class Aggregate(Generic[T]):
    label: T
    confidence: float
    n_labels: int
    method: str
    details: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- multi-label


def aggregate_multilabel(
    labels: Mapping[Hashable, Iterable[Hashable]],
    *,
    accuracy: Mapping[Hashable, float] | float = DEFAULT_ANNOTATOR_ACCURACY,
    prior: Mapping[Hashable, float] | float = 0.5,
    universe: Iterable[Hashable] | None = None,
) -> Aggregate[frozenset]:
    """Per-label binary aggregation of label sets (annotator -> set of chosen labels).

    Each label is decided independently by a one-coin vote: log-odds = logit(prior) + sum over annotators of
    +-logit(accuracy_a) (+ if they chose it). With equal accuracies and a 0.5 prior this is majority vote,
    and a tie (posterior exactly 0.5) leaves the label out.
    """
    sets = {a: frozenset(v) for a, v in labels.items()}
    n = len(sets)
    candidates = set().union(*sets.values()) if sets else set()
    if universe is not None:
        candidates |= set(universe)
    ordered = _stable_sorted(candidates)
    if n == 0:
        return Aggregate(frozenset(), 0.0, 0, "multilabel_one_coin", {"label_confidence": {}})
    annotators = list(sets)
    acc = np.array([_clip_prob(accuracy[a] if isinstance(accuracy, Mapping) else accuracy) for a in annotators])
    chosen = np.array([[lab in sets[a] for a in annotators] for lab in ordered], dtype=bool).reshape(
        len(ordered), n)
    pri = np.array([_clip_prob(prior.get(lab, 0.5) if isinstance(prior, Mapping) else prior) for lab in ordered])
    log_odds = logit(pri) + np.where(chosen, 1.0, -1.0) @ logit(acc)
    posterior = expit(log_odds)
    present = posterior > 0.5
    decision_conf = np.where(present, posterior, 1.0 - posterior)
    considered = chosen.any(axis=1) if ordered else np.zeros(0, bool)
    conf = float(decision_conf[considered].mean()) if considered.any() else _unanimous_empty_confidence(acc)
    return Aggregate(
        label=frozenset(lab for lab, p in zip(ordered, present) if p),
        confidence=conf, n_labels=n, method="multilabel_one_coin",
        details={"label_confidence": {lab: float(c) for lab, c in zip(ordered, decision_conf)},
                 "label_posterior": {lab: float(p) for lab, p in zip(ordered, posterior)},
                 "label_votes": {lab: int(v) for lab, v in zip(ordered, chosen.sum(axis=1))}})


def _unanimous_empty_confidence(acc: np.ndarray) -> float:
    # Everyone chose nothing: the posterior that a (hypothetical) label is truly absent after n "no" votes.
    return float(expit(logit(acc).sum()))


def _clip_prob(p: float) -> float:
    return min(max(float(p), 1e-6), 1 - 1e-6)


def _stable_sorted(values: Iterable[Hashable]) -> list:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


# ------------------------------------------------------------------------------------------------------ text spans


@dataclass(frozen=True)
class Span:
    start: int  # character offset, inclusive
    end: int  # character offset, exclusive
    label: Hashable = None
    confidence: float = 1.0

    def key(self) -> tuple[int, int, Hashable]:
        return self.start, self.end, self.label


def _as_span(s: Span | Sequence[Any]) -> Span:
    span = s if isinstance(s, Span) else Span(int(s[0]), int(s[1]), s[2] if len(s) > 2 else None)
    if span.end < span.start or span.start < 0:
        raise InvalidAnnotation(f"span [{span.start}, {span.end}) is not a valid range")
    return span


def aggregate_spans(
    labels: Mapping[Hashable, Iterable[Span | Sequence[Any]]],
    *,
    tokens: Sequence[tuple[int, int]] | None = None,
    min_support: float = MAJORITY,
) -> Aggregate[list[Span]]:
    """Position-level voting over annotators' spans, merged back into spans.

    Positions are characters, or `tokens` ((start, end) character ranges) when given: a span covers a token
    if it overlaps it, so boundary jitter inside a token does not matter. A position gets the label most
    annotators gave it if strictly more than `min_support` of the task's annotators (including those who
    marked nothing) gave it. Consecutive positions with the same winning label form a span, split where
    more than `min_support` of the annotators start a span, so adjacent entities stay apart.
    """
    spans = {a: [_as_span(s) for s in v] for a, v in labels.items()}
    n = len(spans)
    method = "span_token_vote" if tokens is not None else "span_char_vote"
    if n == 0:
        return Aggregate([], 0.0, 0, method)
    all_spans = [s for v in spans.values() for s in v]
    label_values = _stable_sorted({s.label for s in all_spans})
    label_index = {lab: i for i, lab in enumerate(label_values)}
    if tokens is not None:
        tok = np.asarray(tokens, dtype=np.int64).reshape(-1, 2)
        starts_pos, ends_pos = tok[:, 0], tok[:, 1]
        n_pos = len(tok)
    else:
        n_pos = max((s.end for s in all_spans), default=0)
    votes = np.zeros((max(len(label_values), 1), n_pos + 1), dtype=np.int64)
    begins = np.zeros(n_pos + 1, dtype=np.int64)
    for annotator_spans in spans.values():
        mine = np.zeros((votes.shape[0], n_pos + 1), dtype=np.int64)
        my_begins = np.zeros(n_pos + 1, dtype=bool)
        for s in annotator_spans:
            if tokens is not None:
                lo = int(np.searchsorted(ends_pos, s.start, side="right"))  # first token ending after start
                hi = int(np.searchsorted(starts_pos, s.end, side="left"))  # tokens starting before end
            else:
                lo, hi = s.start, s.end
            if hi <= lo:
                continue
            li = label_index[s.label]
            mine[li, lo] += 1
            mine[li, hi] -= 1
            my_begins[lo] = True
        # One vote per annotator and position even if their own spans overlap.
        votes += np.cumsum(mine, axis=1) > 0
        begins += my_begins
    votes, begins = votes[:, :n_pos], begins[:n_pos]
    if n_pos == 0 or not label_values:
        return Aggregate([], 1.0, n, method, {"support": []})
    best = np.argmax(votes, axis=0)
    best_votes = votes[best, np.arange(n_pos)]
    share = best_votes / n
    keep = share > min_support
    anyone = votes.sum(axis=0) > 0
    decisiveness = np.where(keep, share, 1.0 - votes.max(axis=0) / n)
    task_conf = float(decisiveness[anyone].mean()) if anyone.any() else 1.0
    result: list[Span] = []
    i = 0
    while i < n_pos:
        if not keep[i]:
            i += 1
            continue
        j = i + 1
        while j < n_pos and keep[j] and best[j] == best[i] and begins[j] / n <= min_support:
            j += 1
        if tokens is not None:
            start, end = int(starts_pos[i]), int(ends_pos[j - 1])
        else:
            start, end = i, j
        result.append(Span(start, end, label_values[best[i]], float(share[i:j].mean())))
        i = j
    return Aggregate(result, task_conf, n, method,
                     {"support": [s.confidence for s in result],
                      "pairwise_f1": mean_pairwise_span_f1(spans)})


def span_f1(a: Iterable[Span | Sequence[Any]], b: Iterable[Span | Sequence[Any]],
            *, match: Literal["exact", "overlap"] = "exact") -> float:
    """F1 between two annotators' span sets (symmetric; both empty = 1.0).

    exact: same start, end and label. overlap: same label and overlapping ranges, matched one-to-one to
    maximise the number of matches.
    """
    sa, sb = [_as_span(s) for s in a], [_as_span(s) for s in b]
    if not sa and not sb:
        return 1.0
    if not sa or not sb:
        return 0.0
    if match == "exact":
        ka, kb = {s.key() for s in sa}, {s.key() for s in sb}
        hits = len(ka & kb)
        return 2.0 * hits / (len(ka) + len(kb))
    ok = np.array([[x.label == y.label and x.start < y.end and y.start < x.end for y in sb] for x in sa])
    rows, cols = linear_sum_assignment(-ok.astype(np.float64))
    hits = int(ok[rows, cols].sum())
    return 2.0 * hits / (len(sa) + len(sb))


def mean_pairwise_span_f1(labels: Mapping[Hashable, Iterable[Span | Sequence[Any]]],
                          *, match: Literal["exact", "overlap"] = "exact") -> float:
    """Mean span F1 over annotator pairs: the task's span agreement; NaN with fewer than two annotators."""
    sets = [list(v) for v in labels.values()]
    scores = [span_f1(x, y, match=match) for x, y in combinations(sets, 2)]
    return float(np.mean(scores)) if scores else math.nan


# -------------------------------------------------------------------------------------------------- bounding boxes


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    label: Hashable = None
    score: float = 1.0  # annotator's (or model's) confidence in this box; weights the fusion

    def coords(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2


@dataclass(frozen=True)
class FusedBox:
    x1: float
    y1: float
    x2: float
    y2: float
    label: Hashable
    confidence: float  # support x mean member score
    support: float  # fraction of the task's annotators who drew this object
    members: tuple[Hashable, ...]  # annotators whose boxes were fused


def _as_box(b: Box | Sequence[Any]) -> Box:
    if isinstance(b, Box):
        box = b
    else:
        box = Box(float(b[0]), float(b[1]), float(b[2]), float(b[3]), b[4] if len(b) > 4 else None,
                  float(b[5]) if len(b) > 5 else 1.0)
    if box.x2 < box.x1 or box.y2 < box.y1:
        raise InvalidAnnotation(f"box {box.coords()} has x2 < x1 or y2 < y1")
    return box


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) arrays of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def aggregate_boxes(
    labels: Mapping[Hashable, Iterable[Box | Sequence[Any]]],
    *,
    iou_threshold: float = BOX_IOU_THRESHOLD,
    min_support: float = MAJORITY,
) -> Aggregate[list[FusedBox]]:
    """Weighted box fusion across annotators.

    Boxes are visited by descending score (then annotator order) and each joins the same-label cluster whose
    current fused box overlaps it most (IoU >= `iou_threshold`) among clusters without a box from the same
    annotator; otherwise it starts a cluster. A cluster's box is the score-weighted mean of its members'
    coordinates. Clusters supported by more than `min_support` of the annotators are kept.
    """
    boxes = {a: [_as_box(b) for b in v] for a, v in labels.items()}
    n = len(boxes)
    if n == 0:
        return Aggregate([], 0.0, 0, "weighted_box_fusion")
    flat = [(b, a, ai) for ai, (a, bs) in enumerate(boxes.items()) for b in bs]
    flat.sort(key=lambda t: (-t[0].score, t[2]))
    clusters: list[dict[str, Any]] = []
    for box, annotator, _ in flat:
        best, best_iou = None, iou_threshold
        candidates = [c for c in clusters if c["label"] == box.label and annotator not in c["annotators"]]
        if candidates:
            fused = np.array([c["fused"] for c in candidates])
            ious = box_iou(np.array([box.coords()]), fused)[0]
            k = int(np.argmax(ious))
            if ious[k] >= best_iou:
                best = candidates[k]
        if best is None:
            best = {"label": box.label, "annotators": [], "coords": [], "scores": []}
            clusters.append(best)
        best["annotators"].append(annotator)
        best["coords"].append(box.coords())
        best["scores"].append(box.score)
        w = np.asarray(best["scores"], dtype=np.float64)
        w = w if w.sum() > 0 else np.ones_like(w)
        best["fused"] = tuple((np.asarray(best["coords"]) * w[:, None]).sum(axis=0) / w.sum())
    result: list[FusedBox] = []
    decisiveness = []
    for c in clusters:
        support = len(c["annotators"]) / n
        kept = support > min_support
        decisiveness.append(support if kept else 1.0 - support)
        if kept:
            x1, y1, x2, y2 = (float(v) for v in c["fused"])
            result.append(FusedBox(x1, y1, x2, y2, c["label"], support * float(np.mean(c["scores"])), support,
                                   tuple(c["annotators"])))
    result.sort(key=lambda f: (-f.confidence, f.y1, f.x1))
    conf = float(np.mean(decisiveness)) if decisiveness else 1.0
    return Aggregate(result, conf, n, "weighted_box_fusion",
                     {"n_clusters": len(clusters), "pairwise_f1": mean_pairwise_box_f1(boxes, iou_threshold)})


def box_f1(a: Iterable[Box | Sequence[Any]], b: Iterable[Box | Sequence[Any]],
           *, iou_threshold: float = BOX_IOU_THRESHOLD) -> float:
    """F1 between two annotators' boxes, one-to-one matched on same label and IoU >= threshold."""
    ba, bb = [_as_box(x) for x in a], [_as_box(x) for x in b]
    if not ba and not bb:
        return 1.0
    if not ba or not bb:
        return 0.0
    iou = box_iou(np.array([x.coords() for x in ba]), np.array([x.coords() for x in bb]))
    same = np.array([[x.label == y.label for y in bb] for x in ba])
    score = np.where(same & (iou >= iou_threshold), iou, 0.0)
    rows, cols = linear_sum_assignment(-score)
    hits = int((score[rows, cols] > 0).sum())
    return 2.0 * hits / (len(ba) + len(bb))


def mean_pairwise_box_f1(labels: Mapping[Hashable, Iterable[Box | Sequence[Any]]],
                         iou_threshold: float = BOX_IOU_THRESHOLD) -> float:
    sets = [list(v) for v in labels.values()]
    scores = [box_f1(x, y, iou_threshold=iou_threshold) for x, y in combinations(sets, 2)]
    return float(np.mean(scores)) if scores else math.nan


# ------------------------------------------------------------------------------------------------ numeric / rating

NumericMethod = Literal["median", "huber", "trimmed_mean", "mean"]


def huber_location(x: np.ndarray, *, c: float = HUBER_C, max_iter: int = 50, tol: float = 1e-9) -> float:
    """Huber M-estimate of location with the MAD scale held fixed (IRLS from the median)."""
    x = np.asarray(x, dtype=np.float64)
    mu = float(np.median(x))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(x - mu)))
    if scale == 0:
        return mu  # a majority gave exactly the same value: that is the robust answer
    for _ in range(max_iter):
        r = np.abs(x - mu) / (c * scale)
        w = np.where(r <= 1, 1.0, 1.0 / np.maximum(r, 1e-300))
        new = float((w * x).sum() / w.sum())
        if abs(new - mu) <= tol * max(1.0, abs(mu)):
            return new
        mu = new
    return mu


def trimmed_mean(x: np.ndarray, proportion: float = TRIM_PROPORTION) -> float:
    """Mean after cutting `proportion` of the values from each end (rounded down, as scipy's trim_mean)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    k = int(proportion * x.size)
    return float(x[k:x.size - k].mean())


def aggregate_numeric(
    labels: Mapping[Hashable, float],
    *,
    method: NumericMethod = "huber",
    tolerance: float = DEFAULT_TOLERANCE,
    prior_sd: float | None = None,
) -> Aggregate[float]:
    """Consensus of numeric answers (ratings, counts, measurements) with dispersion-based confidence.

    confidence = P(|consensus - true mean| <= tolerance) = 2 Phi(tolerance / se) - 1 with se = s / sqrt(n),
    s^2 = (n * sigma_MAD^2 + prior_sd^2) / (n + 1) (prior_sd defaults to 2 * tolerance).
    """
    values = np.array([float(v) for v in labels.values() if v is not None and not math.isnan(float(v))])
    n = values.size
    if n == 0:
        return Aggregate(math.nan, 0.0, 0, method)
    if method == "median":
        centre = float(np.median(values))
    elif method == "huber":
        centre = huber_location(values)
    elif method == "trimmed_mean":
        centre = trimmed_mean(values)
    elif method == "mean":
        centre = float(values.mean())
    else:
        raise InvalidAnnotation(f"unknown numeric method {method!r}")
    median = float(np.median(values))
    mad_sigma = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    prior = 2.0 * tolerance if prior_sd is None else prior_sd
    s = math.sqrt((n * mad_sigma**2 + prior**2) / (n + 1))
    se = s / math.sqrt(n)
    conf = float(2 * norm.cdf(tolerance / se) - 1) if se > 0 else 1.0
    return Aggregate(centre, conf, n, method,
                     {"median": median, "mad_sigma": mad_sigma, "std": float(values.std(ddof=1)) if n > 1 else 0.0,
                      "min": float(values.min()), "max": float(values.max())})


# ------------------------------------------------------------------------------------------------------- free text


def normalise_text(text: str) -> str:
    return " ".join(text.casefold().split())


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance between two sequences (strings or token lists); one numpy row operation per element of a."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    if isinstance(b, str) and isinstance(a, str):
        bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
        aa = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    else:
        codes: dict[Hashable, int] = {}
        aa = np.array([codes.setdefault(x, len(codes)) for x in a], dtype=np.int64)
        bb = np.array([codes.setdefault(x, len(codes)) for x in b], dtype=np.int64)
    ramp = np.arange(len(b) + 1, dtype=np.int64)
    prev = ramp.copy()
    for i, ch in enumerate(aa, start=1):
        # Substitution / deletion first, then insertions via a running minimum: cur[j] = min_k tmp[k] + (j - k).
        tmp = np.empty_like(prev)
        tmp[0] = i
        tmp[1:] = np.minimum(prev[:-1] + (bb != ch), prev[1:] + 1)
        prev = np.minimum.accumulate(tmp - ramp) + ramp
    return int(prev[-1])


def text_similarity(a: str, b: str) -> float:
    """1 - Levenshtein / max length on normalised text (1.0 for two empty strings)."""
    a, b = normalise_text(a), normalise_text(b)
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - levenshtein(a, b) / longest


def _similarity_matrix(texts: Sequence[str]) -> np.ndarray:
    n = len(texts)
    sim = np.eye(n)
    for i, j in combinations(range(n), 2):
        sim[i, j] = sim[j, i] = text_similarity(texts[i], texts[j])
    return sim


def aggregate_text(labels: Mapping[Hashable, str], *,
                   method: Literal["medoid", "rover"] = "rover") -> Aggregate[str]:
    """Free-text consensus.

    medoid: the answer with the highest mean normalised-Levenshtein similarity to the others (ties to the
    first annotator). rover: a token-level ROVER-lite — every answer is aligned to the medoid by token edit
    distance, and each slot of the medoid (and each gap between its tokens) takes the majority token, so
    three answers each with a different typo give the clean sentence. Rover falls back to the medoid
    when its output would be less similar to the answers than the medoid itself.
    """
    annotators = list(labels)
    texts = [labels[a] for a in annotators]
    n = len(texts)
    if n == 0:
        return Aggregate("", 0.0, 0, method)
    if n == 1:
        return Aggregate(texts[0], SINGLE_TEXT_CONFIDENCE, 1, method, {"medoid_annotator": annotators[0]})
    sim = _similarity_matrix(texts)
    mean_sim = (sim.sum(axis=1) - 1.0) / (n - 1)
    m = int(np.argmax(mean_sim))
    medoid = texts[m]
    details: dict[str, Any] = {"medoid_annotator": annotators[m], "pairwise_similarity": float(
        (sim.sum() - n) / (n * (n - 1)))}
    if method == "medoid":
        return Aggregate(medoid, float(mean_sim[m]), n, "medoid", details)
    if method != "rover":
        raise InvalidAnnotation(f"unknown text method {method!r}")
    combined = _rover(medoid, [t for i, t in enumerate(texts) if i != m])
    rover_sim = float(np.mean([text_similarity(combined, t) for t in texts]))
    medoid_sim = float(np.mean([text_similarity(medoid, t) for t in texts]))
    if rover_sim < medoid_sim:
        return Aggregate(medoid, float(mean_sim[m]), n, "medoid", details)
    return Aggregate(combined, rover_sim, n, "rover", details)


def _align(ref: list[str], hyp: list[str]) -> list[tuple[int, int]]:
    """Token alignment (ref index or -1, hyp index or -1) minimising edit distance; ties prefer matches."""
    nr, nh = len(ref), len(hyp)
    d = np.zeros((nr + 1, nh + 1), dtype=np.int64)
    d[:, 0] = np.arange(nr + 1)
    d[0, :] = np.arange(nh + 1)
    for i in range(1, nr + 1):
        for j in range(1, nh + 1):
            d[i, j] = min(d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]), d[i - 1, j] + 1, d[i, j - 1] + 1)
    path = []
    i, j = nr, nh
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            path.append((i - 1, -1))
            i -= 1
        else:
            path.append((-1, j - 1))
            j -= 1
    return path[::-1]


def _rover(backbone: str, others: list[str]) -> str:
    ref = backbone.split()
    n_voters = len(others) + 1
    # slot 2k+1 = backbone token k; slot 2k = the gap before token k (insertions); "" = nothing there.
    slots: list[dict[str, int]] = [dict() for _ in range(2 * len(ref) + 1)]
    for k, tok in enumerate(ref):
        slots[2 * k + 1][tok] = 1
    for text in others:
        hyp = text.split()
        inserted: dict[int, list[str]] = {}
        next_ref = 0
        for r, h in _align(ref, hyp):
            if r >= 0:
                slot = 2 * r + 1
                tok = hyp[h] if h >= 0 else ""
                slots[slot][tok] = slots[slot].get(tok, 0) + 1
                next_ref = r + 1
            else:
                inserted.setdefault(2 * next_ref, []).append(hyp[h])
        for gap, toks in inserted.items():
            phrase = " ".join(toks)
            slots[gap][phrase] = slots[gap].get(phrase, 0) + 1
    out = []
    for index, slot in enumerate(slots):
        votes = dict(slot)
        votes[""] = votes.get("", 0) + n_voters - sum(slot.values())  # voters with nothing here
        backbone_choice = ref[index // 2] if index % 2 else ""
        best = max(votes.items(), key=lambda kv: (kv[1], kv[0] == backbone_choice))  # ties keep the backbone
        if best[0]:
            out.append(best[0])
    return " ".join(out)
