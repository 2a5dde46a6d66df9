"""Annotator quality table, spammer / adversarial flags and pause decisions on simulated crowds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.consensus.quality.annotators import (
    MIN_GOLD_FOR_FLAGS,
    PauseReason,
    annotator_quality,
    pause_decisions,
    spammer_score,
    wilson_interval,
)

CLASSES = ["a", "b", "c"]


def test_wilson_interval_reference_values() -> None:
    lo, hi = wilson_interval(8, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.49016247153664183, 0.9433178485456247))
    lo, hi = wilson_interval(0, 20)
    assert (float(lo), float(hi)) == pytest.approx((0.0, 0.1611251580528194), abs=1e-12)
    lo, hi = wilson_interval(np.array([45, 0]), np.array([50, 0]))
    assert lo == pytest.approx([0.7863976856252034, 0.0]) and hi == pytest.approx([0.9565242350681095, 1.0])


def test_spammer_score() -> None:
    assert spammer_score(np.eye(3)) == pytest.approx(1.0)
    assert spammer_score(np.full((3, 3), 1 / 3)) == pytest.approx(0.0)
    assert spammer_score(np.array([[0.2, 0.8], [0.2, 0.8]])) == pytest.approx(0.0)  # biased but uninformative
    sens, spec = 0.9, 0.7
    assert spammer_score(np.array([[sens, 1 - sens], [1 - spec, spec]])) == pytest.approx((sens + spec - 1) ** 2)
    assert spammer_score(np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1.0)  # inverted is informative


def simulate(seed: int = 0, n_items: int = 300):
    """Good, mediocre, random (spammer), constant (spammer) and inverting (adversarial) annotators."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(CLASSES, size=n_items)
    items, annotators, values = [], [], []

    def add(name: str, answers) -> None:
        items.extend(range(n_items))
        annotators.extend([name] * n_items)
        values.extend(answers)

    def noisy(acc: float):
        wrong = [rng.choice([c for c in CLASSES if c != t]) for t in truth]
        return np.where(rng.random(n_items) < acc, truth, wrong)

    add("good", noisy(0.95))
    add("ok", noisy(0.75))
    add("random", rng.choice(CLASSES, size=n_items))
    add("constant", ["a"] * n_items)
    shift = {"a": "b", "b": "c", "c": "a"}
    add("inverter", [shift[t] if rng.random() < 0.95 else t for t in truth])
    gold = {i: truth[i] for i in range(0, n_items, 5)}  # 60 gold items
    consensus = {i: truth[i] for i in range(n_items)}
    return items, annotators, values, gold, consensus, truth


def test_quality_table_gold_accuracy_and_flags() -> None:
    items, annotators, values, gold, consensus, _ = simulate()
    rows = {q.annotator: q for q in annotator_quality(items, annotators, values, gold=gold, consensus=consensus)}
    assert list(rows) == sorted(["good", "ok", "random", "constant", "inverter"])
    good = rows["good"]
    assert good.n_labels == 300 and good.n_gold == 60
    assert good.gold_accuracy == pytest.approx(good.gold_correct / 60)
    assert good.gold_accuracy_low < good.gold_accuracy < good.gold_accuracy_high
    assert good.gold_accuracy > 0.85 and good.consensus_agreement > 0.85
    assert not good.spammer and not good.adversarial
    assert not rows["ok"].spammer and not rows["ok"].adversarial
    assert rows["random"].spammer and not rows["random"].adversarial
    assert rows["constant"].spammer and rows["constant"].top_answer_share == 1.0
    assert rows["inverter"].adversarial and not rows["inverter"].spammer
    assert rows["inverter"].gold_accuracy_high < rows["inverter"].gold_chance
    assert all(rows[a].reasons for a in ("random", "constant", "inverter"))


def test_flags_from_model_confusion_matrices() -> None:
    items, annotators, values, _, _, _ = simulate(seed=1)
    confusion = {
        "good": np.eye(3) * 0.9 + 0.1 / 3,
        "ok": np.eye(3) * 0.6 + 0.4 / 3,
        "random": np.full((3, 3), 1 / 3),
        "constant": np.array([[1.0, 0, 0]] * 3),
        "inverter": np.roll(np.eye(3), 1, axis=1),
    }
    rows = {q.annotator: q for q in annotator_quality(items, annotators, values, confusion=confusion,
                                                       classes=CLASSES)}
    assert rows["good"].spammer_score > 0.7 and not rows["good"].spammer
    assert rows["random"].spammer and rows["random"].spammer_score == pytest.approx(0.0)
    assert rows["constant"].spammer
    assert rows["inverter"].adversarial
    assert rows["inverter"].model_accuracy == pytest.approx(0.0)
    assert rows["inverter"].model_chance == pytest.approx(1 / 3)
    assert math.isnan(rows["good"].gold_accuracy)  # no gold given
    with pytest.raises(ValueError):
        annotator_quality(items, annotators, values, confusion=confusion)


def test_consensus_alone_flags_below_chance_annotators() -> None:
    items, annotators, values, _, consensus, _ = simulate(seed=2)
    rows = {q.annotator: q for q in annotator_quality(items, annotators, values, consensus=consensus)}
    assert rows["inverter"].adversarial
    assert rows["random"].spammer
    assert not rows["good"].spammer and not rows["good"].adversarial


def test_little_evidence_never_flags() -> None:
    # An annotator who labelled once, wrongly, on a gold item: too little evidence for any flag.
    rows = annotator_quality(["t1", "t1", "t2"], ["once", "u", "u"], ["b", "a", "a"],
                             gold={"t1": "a", "t2": "a"}, consensus={"t1": "a", "t2": "a"})
    once = rows[0]
    assert once.annotator == "once" and once.n_labels == 1 and once.gold_accuracy == 0.0
    assert not once.spammer and not once.adversarial
    assert pause_decisions(rows, min_gold_accuracy=0.9) == []


def test_gold_label_nobody_gave_still_counts() -> None:
    n = MIN_GOLD_FOR_FLAGS
    rows = annotator_quality(list(range(n)), ["u"] * n, ["a"] * n, gold={i: "z" for i in range(n)})
    assert rows[0].n_gold == n and rows[0].gold_accuracy == 0.0


def test_pause_decisions() -> None:
    items, annotators, values, gold, consensus, _ = simulate(seed=3)
    rows = annotator_quality(items, annotators, values, gold=gold, consensus=consensus)
    decisions = {d.annotator: d for d in pause_decisions(rows)}
    assert set(decisions) == {"random", "constant", "inverter"}
    assert decisions["inverter"].reason is PauseReason.ADVERSARIAL
    assert decisions["random"].reason == "spammer"
    assert "chance" in decisions["inverter"].detail
    strict = {d.annotator: d.reason for d in pause_decisions(rows, min_gold_accuracy=0.9)}
    assert strict["ok"] is PauseReason.LOW_ACCURACY
    assert "good" not in strict
