"""Known-answer and property tests for the agreement metrics.

Reference values: Cohen's kappa 50-item example (po = 0.7, pe = 0.5); Fleiss (1971) / Wikipedia 10 x 14
example; Krippendorff (2011) reliability data with missing values. The alpha, Fleiss and weighted-kappa
figures were checked once against the `krippendorff`, `statsmodels` and `scikit-learn` packages in a scratch
environment (not project dependencies).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from itertools import permutations

import numpy as np
import pytest

from services.consensus.agreement.metrics import (
    LEVELS,
    InvalidLabels,
    LabelTable,
    agreement_over_time,
    coincidence_matrix,
    cohen_kappa,
    cohen_kappa_from_table,
    fleiss_kappa,
    fleiss_kappa_from_counts,
    kappa_matrix,
    krippendorff_alpha,
    krippendorff_alpha_reliability_data,
    pairwise_agreement,
    per_item_percent_agreement,
    per_task_agreement,
    percent_agreement,
    project_agreement,
    summarize,
)

NAN = math.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers x 12 units.
KRIPPENDORFF_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
KRIPPENDORFF_ALPHA = {
    "nominal": 0.743421052631579,
    "ordinal": 0.8153875037548814,
    "interval": 0.8491071428571428,
    "ratio": 0.7974027747116121,
}

# Fleiss (1971) as on Wikipedia: 10 subjects, 14 raters, 5 categories.
FLEISS_COUNTS = np.array([
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
])


def table_from_counts(counts: np.ndarray) -> LabelTable:
    items, annotators, values = [], [], []
    for i, row in enumerate(counts):
        rater = 0
        for category, c in enumerate(row):
            for _ in range(int(c)):
                items.append(i)
                annotators.append(rater)
                values.append(category)
                rater += 1
    return LabelTable.from_labels(items, annotators, values)


def cohen_50_items() -> tuple[list[str], list[str]]:
    # 20 both yes, 5 A yes / B no, 10 A no / B yes, 15 both no.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    return a, b


# ---------------------------------------------------------------------------------------------- Cohen's kappa


def test_cohen_kappa_classic_50_item_example() -> None:
    a, b = cohen_50_items()
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)
    assert cohen_kappa_from_table([[20, 5], [10, 15]]) == pytest.approx(0.4, abs=1e-12)


def test_weighted_cohen_kappa_matches_reference() -> None:
    a = [0, 0, 1, 1, 2, 2, 0, 1, 2, 2, 1, 0, 2]
    b = [0, 1, 1, 2, 2, 1, 0, 1, 2, 0, 1, 0, 2]
    assert cohen_kappa(a, b) == pytest.approx(0.5398230088495576, abs=1e-12)
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(0.563758389261745, abs=1e-12)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.5882352941176471, abs=1e-12)


def test_cohen_kappa_edge_cases() -> None:
    assert cohen_kappa(["x", "y", "x"], ["x", "y", "x"]) == pytest.approx(1.0)
    # Both raters used one and the same category: chance agreement is 1, kappa undefined.
    assert math.isnan(cohen_kappa(["x"] * 5, ["x"] * 5))
    assert math.isnan(cohen_kappa([], []))
    # Systematic disagreement on a balanced binary task is kappa = -1.
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    # Missing entries drop the item from both raters.
    a, b = cohen_50_items()
    assert cohen_kappa(a + [None, "yes"], b + ["no", NAN]) == pytest.approx(0.4)
    with pytest.raises(InvalidLabels):
        cohen_kappa([1, 2], [1])


def test_pairwise_kappa_matches_two_rater_kappa_and_skips_sparse_pairs() -> None:
    a, b = cohen_50_items()
    rng = np.random.default_rng(3)
    c = list(rng.choice(["yes", "no"], size=50))
    items = list(range(50)) * 3 + [0]
    annotators = ["A"] * 50 + ["B"] * 50 + ["C"] * 50 + ["once"]
    table = LabelTable.from_labels(items, annotators, a + b + c + ["yes"])
    pairs = {(p.annotator_a, p.annotator_b): p for p in pairwise_agreement(table, min_items=10)}
    assert set(pairs) == {("A", "B"), ("A", "C"), ("B", "C")}
    assert pairs[("A", "B")].cohen_kappa == pytest.approx(0.4)
    assert pairs[("A", "B")].percent_agreement == pytest.approx(0.7)
    assert pairs[("A", "B")].n_items == 50
    assert pairs[("B", "C")].cohen_kappa == pytest.approx(cohen_kappa(b, c))

    ids, matrix = kappa_matrix(table, min_items=10)
    pos = {x: i for i, x in enumerate(ids.tolist())}
    assert matrix[pos["A"], pos["B"]] == matrix[pos["B"], pos["A"]] == pytest.approx(0.4)
    assert matrix[pos["A"], pos["A"]] == 1.0
    # The annotator who labelled once co-labelled one item with each: below min_items, so NaN everywhere.
    assert np.isnan(matrix[pos["once"]]).all()
    assert len(pairwise_agreement(table, min_items=1)) == 6


# ---------------------------------------------------------------------------------------------- Fleiss' kappa


def test_fleiss_kappa_wikipedia_example() -> None:
    assert fleiss_kappa_from_counts(FLEISS_COUNTS) == pytest.approx(0.20993070442195522, abs=1e-12)
    table = table_from_counts(FLEISS_COUNTS)
    assert fleiss_kappa(table) == pytest.approx(0.20993070442195522, abs=1e-12)
    # P-bar from the same example.
    assert percent_agreement(table) == pytest.approx(0.378, abs=5e-4)


def test_fleiss_kappa_variable_raters() -> None:
    counts = np.array([[3, 0], [1, 1], [0, 4], [2, 1], [5, 0]])
    p_i = np.array([1.0, 0.0, 1.0, 1 / 3, 1.0])
    p_j = counts.sum(axis=0) / counts.sum()
    expected = (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())
    assert fleiss_kappa_from_counts(counts) == pytest.approx(expected)
    # A row with one rating is dropped (its own agreement is undefined) and changes nothing.
    assert fleiss_kappa_from_counts(np.vstack([counts, [[0, 1]]])) == pytest.approx(expected)
    assert fleiss_kappa(table_from_counts(counts)) == pytest.approx(expected)


def test_fleiss_kappa_degenerate() -> None:
    assert math.isnan(fleiss_kappa_from_counts(np.array([[1, 0], [0, 1]])))  # nobody paired
    assert math.isnan(fleiss_kappa_from_counts(np.array([[3, 0], [2, 0]])))  # no variation
    assert fleiss_kappa_from_counts(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------- Krippendorff's alpha


@pytest.mark.parametrize("level", LEVELS)
def test_krippendorff_canonical_example(level: str) -> None:
    assert krippendorff_alpha_reliability_data(KRIPPENDORFF_DATA, level) == pytest.approx(
        KRIPPENDORFF_ALPHA[level], abs=1e-12)


def test_krippendorff_coincidence_matrix_of_canonical_example() -> None:
    table = LabelTable.from_reliability_data(KRIPPENDORFF_DATA)
    o = coincidence_matrix(table)
    # Krippendorff (2011), table of coincidences: n = 40 pairable values; n_c = 9, 13, 10, 5, 3.
    assert o.sum() == pytest.approx(40)
    assert o.sum(axis=0) == pytest.approx([9, 13, 10, 5, 3])
    assert np.diag(o) == pytest.approx([7, 10, 8, 4, 3])
    assert o == pytest.approx(o.T)


def test_krippendorff_missing_values_as_none_and_strings() -> None:
    data = [[None if isinstance(v, float) else v for v in row] for row in KRIPPENDORFF_DATA]
    assert krippendorff_alpha_reliability_data(data) == pytest.approx(KRIPPENDORFF_ALPHA["nominal"])
    words = [[None if isinstance(v, float) else "abcde"[v - 1] for v in row] for row in KRIPPENDORFF_DATA]
    assert krippendorff_alpha_reliability_data(words) == pytest.approx(KRIPPENDORFF_ALPHA["nominal"])
    # Ordinal over named categories uses the given order.
    assert krippendorff_alpha_reliability_data(words, "ordinal", categories=list("abcde")) == pytest.approx(
        KRIPPENDORFF_ALPHA["ordinal"])


def brute_force_alpha(table: LabelTable, level: str) -> float:
    """Alpha by enumerating every ordered pair of values within each unit (textbook definition)."""
    values = table.categories
    by_item: dict[int, list[int]] = {}
    for item, value in zip(table.item.tolist(), table.value.tolist()):
        by_item.setdefault(item, []).append(value)
    units = [v for v in by_item.values() if len(v) >= 2]
    n_c = np.zeros(len(values))
    for v in units:
        for c in v:
            n_c[c] += 1
    n = n_c.sum()

    def delta(c: int, k: int) -> float:
        if level == "nominal":
            return float(c != k)
        if level == "ordinal":
            lo, hi = min(c, k), max(c, k)
            return (n_c[lo:hi + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
        x, y = float(values[c]), float(values[k])
        if level == "interval":
            return (x - y) ** 2
        return 0.0 if x + y == 0 else ((x - y) / (x + y)) ** 2

    observed = sum(sum(delta(a, b) for a, b in permutations(v, 2)) / (len(v) - 1) for v in units) / n
    used = np.flatnonzero(n_c)
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in used for k in used)
    expected /= n * (n - 1)
    return 1 - observed / expected


@pytest.mark.parametrize("level", LEVELS)
def test_krippendorff_matches_brute_force_on_random_data(level: str) -> None:
    rng = np.random.default_rng(11)
    n_items, n_ann = 60, 7
    truth = rng.integers(0, 6, n_items)
    labels = np.where(rng.random((n_ann, n_items)) < 0.6, truth, rng.integers(0, 6, (n_ann, n_items)))
    data = labels.astype(float) * 1.5 + 0.5
    data[rng.random((n_ann, n_items)) < 0.4] = np.nan  # missing values, some units unpairable
    table = LabelTable.from_reliability_data(data)
    assert krippendorff_alpha(table, level) == pytest.approx(brute_force_alpha(table, level), abs=1e-10)


def test_ratio_alpha_pairwise_path_matches_dense_path(monkeypatch) -> None:
    import services.consensus.agreement.metrics as metrics

    rng = np.random.default_rng(4)
    data = rng.integers(0, 9, (5, 50)).astype(float)
    data[rng.random(data.shape) < 0.3] = np.nan
    table = LabelTable.from_reliability_data(data)
    dense = krippendorff_alpha(table, "ratio")
    monkeypatch.setattr(metrics, "_DENSE_DIFFERENCE_MAX", 0)
    assert krippendorff_alpha(table, "ratio") == pytest.approx(dense, abs=1e-12)
    assert dense == pytest.approx(brute_force_alpha(table, "ratio"), abs=1e-12)


def test_krippendorff_edge_cases() -> None:
    # Perfect agreement with variation.
    assert krippendorff_alpha_reliability_data([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    # Everyone agrees on one value everywhere: expected disagreement 0, alpha not estimable.
    assert math.isnan(krippendorff_alpha_reliability_data([[1, 1, 1], [1, 1, 1]]))
    # Single-label units only: nothing pairable.
    assert math.isnan(krippendorff_alpha_reliability_data([[1, NAN, 2], [NAN, 3, NAN]]))
    # Everyone disagreeing on every unit: alpha < 0, percent agreement 0.
    disagree = [[1, 2, 3, 1], [2, 3, 1, 2], [3, 1, 2, 3]]
    assert krippendorff_alpha_reliability_data(disagree) < 0
    assert percent_agreement(LabelTable.from_reliability_data(disagree)) == 0.0
    with pytest.raises(InvalidLabels):
        krippendorff_alpha_reliability_data([[1, 2]], "circular")
    with pytest.raises(InvalidLabels):
        krippendorff_alpha_reliability_data([["a", "b"], ["a", "c"]], "interval")


def test_krippendorff_continuous_values_use_closed_form() -> None:
    rng = np.random.default_rng(5)
    items = np.repeat(np.arange(300), 3)
    truth = rng.normal(0, 10, 300)
    values = truth[items] + rng.normal(0, 1, items.size)
    table = LabelTable.from_labels(items, np.tile(np.arange(3), 300), values)
    alpha = krippendorff_alpha(table, "interval")
    assert alpha == pytest.approx(brute_force_alpha(table.subset(table.item < 40), "interval"), abs=0.05)
    assert 0.95 < alpha < 1.0


def test_alpha_on_100k_labels_is_fast() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    items = rng.integers(0, 20_000, n)
    truth = rng.integers(0, 5, 20_000)
    values = np.where(rng.random(n) < 0.7, truth[items], rng.integers(0, 5, n))
    annotators = rng.integers(0, 200, n)
    start = time.perf_counter()
    table = LabelTable.from_labels(items, annotators, values)
    alphas = {level: krippendorff_alpha(table, level) for level in LEVELS}
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"alpha at 4 levels on 100k labels took {elapsed:.3f}s"
    # 70 % truth + 30 % uniform noise over 5 classes: expected alpha = 0.7^2 / (1 - 0) ... roughly 0.49.
    assert alphas["nominal"] == pytest.approx(0.49, abs=0.02)


# ------------------------------------------------------------------------------------------ percent agreement


def test_percent_agreement_per_item_and_overall() -> None:
    table = LabelTable.from_labels(
        ["t1"] * 3 + ["t2"] * 2 + ["t3"],
        ["a", "b", "c", "a", "b", "a"],
        ["x", "x", "y", "x", "y", "x"],
    )
    per_item = per_item_percent_agreement(table)
    assert per_item[:2] == pytest.approx([1 / 3, 0.0])
    assert np.isnan(per_item[2])  # single-label task
    assert percent_agreement(table) == pytest.approx(1 / 6)


def test_resubmission_replaces_earlier_label_and_outside_schema_is_ignored(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="quorum.consensus.agreement"):
        table = LabelTable.from_labels(
            ["t1", "t1", "t1", "t1"], ["a", "b", "a", "c"], ["x", "y", "y", "zz"], categories=["x", "y"])
    assert table.n_labels == 2  # a's second label replaced the first; c's label is outside the schema
    assert percent_agreement(table) == 1.0
    assert "outside the schema" in caplog.text


# -------------------------------------------------------------------------------------------------- reports


def test_per_task_alpha_averages_to_project_alpha() -> None:
    table = LabelTable.from_reliability_data(KRIPPENDORFF_DATA)
    tasks = per_task_agreement(table, "interval")
    assert [t.item for t in tasks] == list(range(12))
    pairable = [t for t in tasks if t.n_labels >= 2]
    weighted = sum(t.n_labels * t.alpha for t in pairable) / sum(t.n_labels for t in pairable)
    assert weighted == pytest.approx(KRIPPENDORFF_ALPHA["interval"])
    assert tasks[2].alpha == 1.0 and tasks[2].percent_agreement == 1.0  # all four said 3
    single = tasks[11]
    assert single.n_labels == 1 and math.isnan(single.alpha) and math.isnan(single.percent_agreement)


def test_project_agreement_summary() -> None:
    table = LabelTable.from_reliability_data(KRIPPENDORFF_DATA)
    report = project_agreement(table, "nominal", min_pair_items=5)
    s = report.summary
    assert (s.n_items, s.n_pairable_items, s.n_labels, s.n_annotators) == (12, 11, 41, 4)
    assert s.alpha == pytest.approx(KRIPPENDORFF_ALPHA["nominal"])
    assert 0 < s.fleiss_kappa < 1
    assert len(report.pairs) == 6


def test_agreement_over_time_buckets_by_day_and_iso_week() -> None:
    def ts(day: int, hour: int = 12) -> datetime:
        return datetime(2024, 1, day, hour, tzinfo=timezone.utc)

    # 2024-01-07 is a Sunday, 2024-01-08 a Monday.
    items = ["a", "a", "b", "b", "c", "c", "c"]
    annotators = ["u", "v", "u", "v", "u", "v", "w"]
    values = [1, 1, 1, 2, 2, 2, 2]
    # Item b's last label is on the 8th, so the whole item lands there.
    times = [ts(7), ts(7), ts(7), ts(8), ts(8), ts(9), ts(9, 23)]
    table = LabelTable.from_labels(items, annotators, values, timestamps=times)
    daily = agreement_over_time(table, "day")
    assert [b.start for b in daily] == [datetime(2024, 1, 7), datetime(2024, 1, 8), datetime(2024, 1, 9)]
    assert [b.summary.percent_agreement for b in daily] == [1.0, 0.0, 1.0]
    weekly = agreement_over_time(table, "week")
    assert [b.start for b in weekly] == [datetime(2024, 1, 1), datetime(2024, 1, 8)]
    assert [b.summary.n_items for b in weekly] == [1, 2]
    assert weekly[1].summary.percent_agreement == pytest.approx(0.5)
    epoch = LabelTable.from_labels(["a"], ["u"], [1], timestamps=[ts(10).timestamp()])
    assert agreement_over_time(epoch, "week")[0].start == datetime(2024, 1, 8)
    with pytest.raises(InvalidLabels):
        agreement_over_time(LabelTable.from_labels(["a"], ["u"], [1]))


def test_summarize_empty_table_is_all_nan() -> None:
    s = summarize(LabelTable.from_labels([], [], []))
    assert s.n_labels == 0
    assert math.isnan(s.alpha) and math.isnan(s.fleiss_kappa) and math.isnan(s.percent_agreement)


def test_tuple_ids_and_values_stay_atomic() -> None:
    table = LabelTable.from_labels([(1, 2), (1, 2), (3, 4)], ["a", "b", "a"], [("x", 1), ("x", 1), ("y",)])
    assert table.n_items == 2 and table.n_categories == 2
    assert percent_agreement(table) == 1.0
