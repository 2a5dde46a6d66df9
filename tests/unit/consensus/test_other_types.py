"""Aggregation of multi-label, span, box, numeric and free-text labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.consensus.aggregation.other_types import (
    Box,
    InvalidAnnotation,
    Span,
    aggregate_boxes,
    aggregate_multilabel,
    aggregate_numeric,
    aggregate_spans,
    aggregate_text,
    box_f1,
    box_iou,
    huber_location,
    levenshtein,
    mean_pairwise_span_f1,
    span_f1,
    text_similarity,
    trimmed_mean,
)

# ------------------------------------------------------------------------------------------------- multi-label


def test_multilabel_majority_per_label_with_confidence() -> None:
    result = aggregate_multilabel({"a": {"cat", "dog"}, "b": {"cat"}, "c": {"cat", "bird"}})
    assert result.label == frozenset({"cat"})
    assert result.n_labels == 3 and result.method == "multilabel_one_coin"
    conf = result.details["label_confidence"]
    # One-coin posterior, accuracy 0.75: 3 yes -> 27/28; 1 yes 2 no -> 0.25 present, so 0.75 sure absent.
    assert conf["cat"] == pytest.approx(27 / 28)
    assert conf["dog"] == pytest.approx(0.75)
    assert result.confidence == pytest.approx((27 / 28 + 0.75 + 0.75) / 3)


def test_multilabel_tie_and_weights() -> None:
    tie = aggregate_multilabel({"a": {"x"}, "b": set()})
    assert tie.label == frozenset()
    assert tie.details["label_posterior"]["x"] == pytest.approx(0.5)
    # A reliable annotator outweighs two weak ones.
    weighted = aggregate_multilabel({"expert": {"x"}, "n1": set(), "n2": set()},
                                    accuracy={"expert": 0.95, "n1": 0.6, "n2": 0.6})
    assert weighted.label == frozenset({"x"})


def test_multilabel_single_annotator_and_unanimous_empty() -> None:
    single = aggregate_multilabel({"a": {"x"}})
    assert single.label == frozenset({"x"}) and single.confidence == pytest.approx(0.75)
    empty = aggregate_multilabel({"a": [], "b": [], "c": []})
    assert empty.label == frozenset() and empty.confidence > 0.95
    assert aggregate_multilabel({}).n_labels == 0


# -------------------------------------------------------------------------------------------------------- spans


def test_span_char_vote_merges_majority_positions() -> None:
    result = aggregate_spans({
        "a": [(0, 5, "PER"), (10, 15, "LOC")],
        "b": [(0, 5, "PER"), (11, 15, "LOC")],
        "c": [(1, 5, "PER")],
    })
    assert [(s.start, s.end, s.label) for s in result.label] == [(0, 5, "PER"), (11, 15, "LOC")]
    per, loc = result.label
    assert per.confidence == pytest.approx((2 / 3 + 4 * 1.0) / 5)
    assert loc.confidence == pytest.approx(2 / 3)
    assert result.n_labels == 3 and result.method == "span_char_vote"


def test_span_token_vote_ignores_jitter_inside_tokens_and_keeps_adjacent_entities_apart() -> None:
    text = "New York City is big"
    tokens = [(0, 3), (4, 8), (9, 13), (14, 16), (17, 20)]
    result = aggregate_spans({
        "a": [(0, 8, "LOC"), (9, 13, "LOC")],
        "b": [(0, 7, "LOC"), (9, 13, "LOC")],  # ends mid-token: still covers "York"
        "c": [(1, 8, "LOC"), (9, 12, "LOC")],
    }, tokens=tokens)
    assert [(text[s.start:s.end], s.label) for s in result.label] == [("New York", "LOC"), ("City", "LOC")]
    assert all(s.confidence == pytest.approx(1.0) for s in result.label)
    assert result.method == "span_token_vote"


def test_span_minority_and_conflicting_labels() -> None:
    result = aggregate_spans({"a": [(0, 4, "PER")], "b": [(0, 4, "ORG")], "c": [], "d": [(0, 4, "PER")]})
    assert result.label == []  # 2 of 4 is not a strict majority
    result = aggregate_spans({"a": [(0, 4, "PER")], "b": [(0, 4, "ORG")], "c": [(0, 4, "PER")]})
    assert [(s.start, s.end, s.label) for s in result.label] == [(0, 4, "PER")]
    assert aggregate_spans({"a": [], "b": []}).label == []
    with pytest.raises(InvalidAnnotation):
        aggregate_spans({"a": [(5, 2, "X")]})


def test_span_f1() -> None:
    gold = [(0, 5, "PER"), (10, 15, "LOC"), (20, 25, "ORG")]
    pred = [(0, 5, "PER"), (11, 15, "LOC")]
    assert span_f1(gold, pred) == pytest.approx(2 * 1 / 5)
    assert span_f1(gold, pred, match="overlap") == pytest.approx(2 * 2 / 5)
    assert span_f1(gold, pred) == span_f1(pred, gold)
    assert span_f1([], []) == 1.0 and span_f1(gold, []) == 0.0
    assert mean_pairwise_span_f1({"a": gold, "b": gold, "c": []}) == pytest.approx((1 + 0 + 0) / 3)
    assert math.isnan(mean_pairwise_span_f1({"a": gold}))
    assert span_f1([Span(0, 5, "PER")], [Span(0, 5, "ORG")]) == 0.0


# ----------------------------------------------------------------------------------------------- bounding boxes


TRUE_BOXES = [(10.0, 10.0, 50.0, 60.0, "car"), (100.0, 100.0, 140.0, 130.0, "person"),
              (200.0, 50.0, 260.0, 90.0, "car")]


def jittered_annotations(seed: int, n_annotators: int = 7, sd: float = 2.0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    labels: dict[str, list] = {}
    for a in range(n_annotators):
        boxes = []
        for k, (x1, y1, x2, y2, label) in enumerate(TRUE_BOXES):
            if a == 1 and k == 1:
                continue  # one annotator missed the person
            j = rng.normal(0, sd, 4)
            boxes.append((x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3], label))
        if a == 2:
            boxes.append((300.0, 300.0, 320.0, 320.0, "car"))  # a false positive nobody else drew
        labels[f"w{a}"] = boxes
    return labels


def test_box_fusion_recovers_truth_from_jittered_boxes() -> None:
    result = aggregate_boxes(jittered_annotations(seed=7))
    assert result.method == "weighted_box_fusion" and result.n_labels == 7
    fused = sorted(result.label, key=lambda b: b.x1)
    assert len(fused) == 3  # false positive dropped
    for box, truth in zip(fused, TRUE_BOXES):
        assert box.label == truth[4]
        assert np.abs(np.array([box.x1, box.y1, box.x2, box.y2]) - np.array(truth[:4])).max() < 2.5
        assert box_iou(np.array([[box.x1, box.y1, box.x2, box.y2]]), np.array([truth[:4]]))[0, 0] > 0.9
    person = next(b for b in fused if b.label == "person")
    assert person.support == pytest.approx(6 / 7) and len(person.members) == 6
    assert result.details["n_clusters"] == 4
    # Decisiveness: three kept (1, 6/7, 1) and one rejected at 6/7.
    assert result.confidence == pytest.approx((1 + 6 / 7 + 1 + 6 / 7) / 4)


def test_box_fusion_error_shrinks_with_more_annotators() -> None:
    def mean_error(n: int) -> float:
        errs = []
        for seed in range(20):
            fused = sorted(aggregate_boxes(jittered_annotations(seed, n, sd=4.0)).label, key=lambda b: b.x1)
            errs.append(abs(fused[0].x1 - TRUE_BOXES[0][0]))
        return float(np.mean(errs))

    assert mean_error(9) < mean_error(3)


def test_box_fusion_labels_scores_and_one_box_per_annotator() -> None:
    # Same place, different labels: separate clusters; a's two overlapping boxes never fuse with each other.
    labels = {
        "a": [Box(0, 0, 10, 10, "car"), Box(1, 1, 11, 11, "car")],
        "b": [Box(0, 0, 10, 10, "truck")],
    }
    result = aggregate_boxes(labels, min_support=0.0)
    assert sorted((b.label, len(b.members)) for b in result.label) == [("car", 1), ("car", 1), ("truck", 1)]
    # Scores weight the fused coordinates.
    weighted = aggregate_boxes({"a": [(0, 0, 10, 10, "x", 3.0)], "b": [(2, 0, 12, 10, "x", 1.0)]})
    (box,) = weighted.label
    assert box.x1 == pytest.approx(0.5) and box.x2 == pytest.approx(10.5)
    assert box.confidence == pytest.approx(1.0 * 2.0)  # support 1 x mean score 2
    with pytest.raises(InvalidAnnotation):
        aggregate_boxes({"a": [(10, 0, 0, 10)]})
    empty = aggregate_boxes({"a": [], "b": []})
    assert empty.label == [] and empty.confidence == 1.0


def test_box_iou_and_f1() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]))
    assert iou[0] == pytest.approx([50 / 150, 0.0, 1.0])
    a = [(0, 0, 10, 10, "x"), (20, 20, 30, 30, "x")]
    b = [(1, 1, 10, 10, "x"), (50, 50, 60, 60, "x"), (70, 70, 80, 80, "x")]
    assert box_f1(a, b) == pytest.approx(2 * 1 / 5)
    assert box_f1([], []) == 1.0


# -------------------------------------------------------------------------------------------------------- numeric


def test_numeric_median_huber_trimmed_resist_outliers() -> None:
    ratings = {"a": 4, "b": 4, "c": 5, "d": 4, "e": 1}
    assert aggregate_numeric(ratings, method="median").label == 4.0
    huber = aggregate_numeric(ratings, method="huber").label
    assert 3.9 <= huber <= 4.3
    assert aggregate_numeric(ratings, method="mean").label == pytest.approx(3.6)
    assert aggregate_numeric(ratings, method="trimmed_mean").label == pytest.approx(4.0)  # mean of 4, 4, 4
    assert trimmed_mean(np.array([1, 2, 3, 4, 100]), 0.2) == pytest.approx(3.0)


def test_huber_location_known_value() -> None:
    # The estimate solves sum_i clip(x_i - mu, -k, k) = 0 with k = 1.345 * 1.4826 * MAD.
    x = np.array([1.0, 2.0, 3.5, 4.0, 100.0])
    mu = huber_location(x)
    k = 1.345 * 1.4826 * np.median(np.abs(x - np.median(x)))
    assert np.clip(x - mu, -k, k).sum() == pytest.approx(0.0, abs=1e-6)
    assert 2.5 < mu < 4.0
    assert huber_location(np.array([3.0, 3.0, 3.0, 9.0])) == 3.0


def test_numeric_confidence_reflects_dispersion_and_count() -> None:
    tight = aggregate_numeric({"a": 4, "b": 4, "c": 4})
    loose = aggregate_numeric({"a": 1, "b": 3, "c": 5})
    many = aggregate_numeric({k: 4 for k in "abcdefgh"})
    single = aggregate_numeric({"a": 3})
    assert loose.confidence < tight.confidence < many.confidence < 1.0
    assert single.n_labels == 1 and 0.4 < single.confidence < 0.6
    assert tight.details["mad_sigma"] == 0.0
    assert aggregate_numeric({"a": None}).n_labels == 0
    with pytest.raises(InvalidAnnotation):
        aggregate_numeric({"a": 1}, method="mode")


# ------------------------------------------------------------------------------------------------------ free text


def test_levenshtein_known_distances() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0
    assert levenshtein(["the", "cat"], ["the", "hat", "sat"]) == 2
    assert levenshtein("naïve café", "naive cafe") == 2


def test_levenshtein_matches_reference_dp() -> None:
    def reference(a: str, b: str) -> int:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]

    rng = np.random.default_rng(2)
    for _ in range(200):
        a = "".join(rng.choice(list("abc"), rng.integers(0, 12)))
        b = "".join(rng.choice(list("abc"), rng.integers(0, 12)))
        assert levenshtein(a, b) == reference(a, b)


def test_text_medoid() -> None:
    result = aggregate_text({"a": "Hello world", "b": "hello  world", "c": "goodbye"}, method="medoid")
    assert result.label == "Hello world" and result.method == "medoid"
    assert result.details["medoid_annotator"] == "a"
    assert result.confidence == pytest.approx((1.0 + text_similarity("Hello world", "goodbye")) / 2)


def test_text_rover_repairs_independent_typos() -> None:
    result = aggregate_text({
        "a": "the quick brown fox jumps",
        "b": "the quikc brown fox jumps",
        "c": "the quick brwn fox jumps over",
        "d": "teh quick brown fox jumps",
    })
    assert result.label == "the quick brown fox jumps"
    assert result.method == "rover"
    assert 0.85 < result.confidence < 1.0
    # Each answer has a different typo; no single answer is clean, but the vote is.
    typos = aggregate_text({"a": "a big red barn", "b": "a bgi red barn", "c": "a big rde barn"})
    assert typos.label == "a big red barn"


def test_text_single_and_identical_answers() -> None:
    single = aggregate_text({"a": "only one"})
    assert single.label == "only one" and single.confidence == 0.5 and single.n_labels == 1
    same = aggregate_text({"a": "x y", "b": "x y", "c": "x y"})
    assert same.label == "x y" and same.confidence == pytest.approx(1.0)
    assert aggregate_text({}).n_labels == 0
