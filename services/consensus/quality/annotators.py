"""Per-annotator quality table and the pause decisions the distribution service acts on.

Evidence, strongest first:
- gold: accuracy on gold tasks with a 95 % Wilson interval, compared with the accuracy a guesser with the
  annotator's own answer distribution would reach on the same gold items ("chance");
- an aggregation model's confusion matrix (rows = true class, P(answer | truth)): Raykar & Yu's spammer score
  and the model's expected accuracy against its chance level;
- agreement with the consensus label, tested against chance the same way as gold (weaker: the consensus is
  itself estimated and includes the annotator's own vote, which biases towards agreement — so a rate
  significantly *below* chance is strong evidence of inverted answers);
- constant answers: one value for nearly everything although the project's labels are not that skewed.

Flags need a minimum amount of evidence (the MIN_* constants); below it an annotator is never flagged.
Adversarial (systematically wrong) takes precedence over spammer (answers independent of the truth).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from services.consensus.agreement.metrics import LabelTable, is_missing_value, sorted_unique

# z for a two-sided 95 % Wilson interval.
WILSON_Z = 1.959963984540054
# Minimum evidence before any flag is raised.
MIN_LABELS_FOR_FLAGS = 10
MIN_GOLD_FOR_FLAGS = 10
MIN_CONSENSUS_FOR_FLAGS = 20
# Spammer score (Raykar & Yu; 0 = answers independent of the truth, 1 = perfectly informative) below this.
SPAMMER_SCORE_THRESHOLD = 0.1
# Spammer by accuracy: not significantly above chance AND the point estimate within this margin of chance.
SPAMMER_ACCURACY_MARGIN = 0.15
# Adversarial by model: expected accuracy this far below the model's chance level.
ADVERSARIAL_MODEL_MARGIN = 0.1
# Constant answers: this share of the annotator's labels is one value while the project gives that value to
# at most CONSTANT_PROJECT_SHARE_MAX of its labels.
CONSTANT_ANSWER_SHARE = 0.95
CONSTANT_PROJECT_SHARE_MAX = 0.8


def wilson_interval(successes: np.ndarray | int, trials: np.ndarray | int,
                    z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion; (0, 1) where there are no trials."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    z2 = z * z
    denom = 1.0 + z2 / safe_n
    centre = (p + z2 / (2 * safe_n)) / denom
    half = z * np.sqrt(p * (1 - p) / safe_n + z2 / (4 * safe_n * safe_n)) / denom
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return lo, hi


def spammer_score(confusion: np.ndarray) -> float:
    """Raykar & Yu (JMLR 2012) spammer score of a K x K confusion matrix (rows = true class).

    S = 1/(K(K-1)) sum_{c<c'} ||A[c,:] - A[c',:]||^2: 0 when every row is the same (the answer does not
    depend on the truth), 1 for a perfect or perfectly permuted annotator; binary: (sens + spec - 1)^2.
    """
    a = np.asarray(confusion, dtype=np.float64)
    k = a.shape[0]
    if k < 2:
        return 0.0
    total = k * float((a * a).sum()) - float((a.sum(axis=0) ** 2).sum())
    return float(np.clip(total / (k * (k - 1)), 0.0, 1.0))


class Flag(StrEnum):
    SPAMMER = "spammer"
    ADVERSARIAL = "adversarial"


@dataclass(frozen=True)
class AnnotatorQuality:
    annotator: Any
    n_labels: int
    n_gold: int = 0
    gold_correct: int = 0
    gold_accuracy: float = math.nan
    gold_accuracy_low: float = 0.0  # 95 % Wilson interval
    gold_accuracy_high: float = 1.0
    gold_chance: float = math.nan  # accuracy of a guesser with this annotator's answer distribution
    n_consensus: int = 0
    consensus_agreement: float = math.nan
    consensus_chance: float = math.nan
    model_accuracy: float = math.nan  # sum_c prior_c A[c, c] from the given confusion matrix
    model_chance: float = math.nan
    spammer_score: float = math.nan
    top_answer_share: float = math.nan
    spammer: bool = False
    adversarial: bool = False
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _chance_agreement(truth_codes: np.ndarray, answer_codes: np.ndarray, k: int) -> float:
    """sum_c P(truth = c) P(answer = c) over the same items: agreement expected if answers ignore the truth."""
    if truth_codes.size == 0:
        return math.nan
    p = np.bincount(truth_codes, minlength=k) / truth_codes.size
    q = np.bincount(answer_codes, minlength=k) / answer_codes.size
    return float(p @ q)


def _item_codes(table: LabelTable, mapping: Mapping[Hashable, Hashable] | None) -> np.ndarray:
    """Per item code: the category index of mapping[item], -1 where absent or outside the categories."""
    out = np.full(table.n_items, -1, dtype=np.int64)
    if not mapping:
        return out
    lookup = {c: i for i, c in enumerate(table.categories.tolist())}
    for i, item in enumerate(table.item_ids.tolist()):
        if item in mapping:
            out[i] = lookup.get(mapping[item], -1)
    return out


def _accuracy_flags(correct: int, n: int, chance: float, min_n: int, source: str) -> tuple[bool, bool, list[str]]:
    """(spammer, adversarial, reasons) from an accuracy-vs-chance test on n answers."""
    if n < min_n or math.isnan(chance):
        return False, False, []
    lo, hi = (float(v) for v in wilson_interval(correct, n))
    acc = correct / n
    if hi < chance:
        return False, True, [f"{source} accuracy {acc:.2f} (95% CI {lo:.2f}-{hi:.2f}) is below chance {chance:.2f}"]
    if lo <= chance and acc < chance + SPAMMER_ACCURACY_MARGIN:
        return True, False, [f"{source} accuracy {acc:.2f} (95% CI {lo:.2f}-{hi:.2f}) is not above chance "
                             f"{chance:.2f}"]
    return False, False, []


def annotator_quality(
    items: Sequence[Hashable] | np.ndarray,
    annotators: Sequence[Hashable] | np.ndarray,
    values: Sequence[Hashable] | np.ndarray,
    *,
    gold: Mapping[Hashable, Hashable] | None = None,
    consensus: Mapping[Hashable, Hashable] | None = None,
    confusion: Mapping[Hashable, np.ndarray] | None = None,
    class_prior: Sequence[float] | np.ndarray | None = None,
    classes: Sequence[Hashable] | None = None,
) -> list[AnnotatorQuality]:
    """The quality table, one row per annotator, sorted by annotator id.

    `confusion[annotator]` is a K x K matrix over `classes` (required with `confusion`; rows = true class);
    `class_prior` defaults to uniform. `gold` and `consensus` map item -> label.
    """
    if confusion is not None and classes is None:
        raise ValueError("confusion matrices need `classes` to say what their rows and columns are")
    if classes is None:
        # Gold / consensus labels nobody gave still count (every answer on such an item is wrong).
        extra = list((gold or {}).values()) + list((consensus or {}).values())
        observed = [v for v in list(values) + extra if not is_missing_value(v)]
        classes = sorted_unique(observed)
    table = LabelTable.from_labels(items, annotators, values, categories=classes)
    k = table.n_categories
    gold_code = _item_codes(table, gold)[table.item]
    cons_code = _item_codes(table, consensus)[table.item]
    project_share = np.bincount(table.value, minlength=k) / max(table.n_labels, 1)
    prior = (np.full(k, 1.0 / k) if class_prior is None
             else np.asarray(class_prior, dtype=np.float64) / np.sum(class_prior)) if k else np.zeros(0)
    order = np.argsort(table.annotator, kind="stable")
    bounds = np.searchsorted(table.annotator[order], np.arange(table.n_annotators + 1))
    rows: list[AnnotatorQuality] = []
    for a in range(table.n_annotators):
        idx = order[bounds[a]:bounds[a + 1]]
        ann_id = table.annotator_ids[a]
        ann_id = ann_id.item() if isinstance(ann_id, np.generic) else ann_id
        vals = table.value[idx]
        n = int(idx.size)
        reasons: list[str] = []
        spam = adv = False

        g = gold_code[idx] >= 0
        n_gold = int(g.sum())
        gold_correct = int((vals[g] == gold_code[idx][g]).sum())
        g_lo, g_hi = (float(v) for v in wilson_interval(gold_correct, n_gold))
        gold_chance = _chance_agreement(gold_code[idx][g], vals[g], k)
        s, d, r = _accuracy_flags(gold_correct, n_gold, gold_chance, MIN_GOLD_FOR_FLAGS, "gold")
        spam, adv, reasons = spam or s, adv or d, reasons + r

        c = cons_code[idx] >= 0
        n_cons = int(c.sum())
        cons_agree = int((vals[c] == cons_code[idx][c]).sum())
        cons_chance = _chance_agreement(cons_code[idx][c], vals[c], k)
        s, d, r = _accuracy_flags(cons_agree, n_cons, cons_chance, MIN_CONSENSUS_FOR_FLAGS, "consensus")
        # Agreeing with a consensus one helped form is weak evidence of skill, so only the adversarial test and
        # (when there is no gold) the spammer test use it.
        spam, adv = spam or (s and n_gold < MIN_GOLD_FOR_FLAGS), adv or d
        reasons += r if (d or (s and n_gold < MIN_GOLD_FOR_FLAGS)) else []

        model_acc = model_chance = score = math.nan
        if confusion is not None and ann_id in confusion:
            cm = np.asarray(confusion[ann_id], dtype=np.float64)
            if cm.shape != (k, k):
                raise ValueError(f"confusion matrix of {ann_id!r} is {cm.shape}, expected {(k, k)}")
            cm = cm / np.where(cm.sum(axis=1, keepdims=True) > 0, cm.sum(axis=1, keepdims=True), 1.0)
            score = spammer_score(cm)
            model_acc = float(prior @ np.diag(cm))
            model_chance = float(prior @ (prior @ cm))
            if n >= MIN_LABELS_FOR_FLAGS:
                if model_acc < model_chance - ADVERSARIAL_MODEL_MARGIN:
                    adv = True
                    reasons.append(f"model accuracy {model_acc:.2f} is below its chance level {model_chance:.2f}")
                elif score < SPAMMER_SCORE_THRESHOLD:
                    spam = True
                    reasons.append(f"spammer score {score:.3f} < {SPAMMER_SCORE_THRESHOLD}")

        top_share = math.nan
        if n:
            counts = np.bincount(vals, minlength=k)
            top = int(np.argmax(counts))
            top_share = float(counts[top] / n)
            if (n >= MIN_LABELS_FOR_FLAGS and top_share >= CONSTANT_ANSWER_SHARE
                    and project_share[top] <= CONSTANT_PROJECT_SHARE_MAX):
                spam = True
                reasons.append(f"answered {table.categories[top]!r} on {top_share:.0%} of {n} labels "
                               f"(project: {project_share[top]:.0%})")

        rows.append(AnnotatorQuality(
            annotator=ann_id, n_labels=n, n_gold=n_gold, gold_correct=gold_correct,
            gold_accuracy=gold_correct / n_gold if n_gold else math.nan, gold_accuracy_low=g_lo,
            gold_accuracy_high=g_hi, gold_chance=gold_chance, n_consensus=n_cons,
            consensus_agreement=cons_agree / n_cons if n_cons else math.nan, consensus_chance=cons_chance,
            model_accuracy=model_acc, model_chance=model_chance, spammer_score=score, top_answer_share=top_share,
            spammer=spam and not adv, adversarial=adv, reasons=tuple(reasons)))
    return rows


class PauseReason(StrEnum):
    ADVERSARIAL = "adversarial"
    SPAMMER = "spammer"
    LOW_ACCURACY = "low_accuracy"


@dataclass(frozen=True)
class PauseDecision:
    annotator: Any
    reason: PauseReason
    detail: str


def pause_decisions(quality: Sequence[AnnotatorQuality], *,
                    min_gold_accuracy: float | None = None) -> list[PauseDecision]:
    """Annotators the distribution service should stop giving work to, with the reason.

    `min_gold_accuracy` (the project's bar, optional) pauses annotators whose gold accuracy is confidently
    below it: the upper end of the Wilson interval under the bar, with at least MIN_GOLD_FOR_FLAGS gold items.
    """
    out: list[PauseDecision] = []
    for q in quality:
        if q.adversarial:
            out.append(PauseDecision(q.annotator, PauseReason.ADVERSARIAL, "; ".join(q.reasons)))
        elif q.spammer:
            out.append(PauseDecision(q.annotator, PauseReason.SPAMMER, "; ".join(q.reasons)))
        elif (min_gold_accuracy is not None and q.n_gold >= MIN_GOLD_FOR_FLAGS
              and q.gold_accuracy_high < min_gold_accuracy):
            out.append(PauseDecision(
                q.annotator, PauseReason.LOW_ACCURACY,
                f"gold accuracy {q.gold_accuracy:.2f} (95% CI {q.gold_accuracy_low:.2f}-{q.gold_accuracy_high:.2f})"
                f" is below the project's minimum {min_gold_accuracy:.2f}"))
    return out
