"""Inter-annotator agreement: percent agreement, Cohen's kappa, Fleiss' kappa, Krippendorff's alpha.

Every metric works on a `LabelTable`: labels as (item, annotator, value) triples coded once into integer
arrays, so each metric is a handful of vectorised numpy / sparse operations (alpha on 100k labels takes a few
milliseconds). Missing data is simply an absent triple: an item labelled by one annotator is unpairable and
drops out of every chance-corrected metric, as in Krippendorff's treatment.

Conventions
- One value per (item, annotator): a re-submission replaces the earlier label (the last triple in input order
  wins), as the service stores annotation history but scores the current label.
- Values outside `categories` (when given) are ignored with a warning: the api rejects them upstream, so one
  arriving here is a schema change in flight, not a reason to fail a report.
- A metric that is not estimable (no item with two labels; no variation at all, so expected disagreement is
  0) is NaN, never a made-up 0 or 1. Callers render NaN as "not enough data".

Fleiss' kappa with a variable number of raters per item: P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1)) for
every item with n_i >= 2; P-bar is the unweighted mean of P_i; p_j = sum_i n_ij / sum_i n_i are the pooled
category proportions over those items; P-bar_e = sum_j p_j^2; kappa = (P-bar - P-bar_e) / (1 - P-bar_e). With
a constant number of raters this is exactly Fleiss (1971). Items with a single rating are dropped (their
within-item agreement is undefined).

Krippendorff's alpha uses the coincidence-matrix formulation (Krippendorff 2011, "Computing Krippendorff's
alpha-reliability"): o_ck = sum_u sum_{i != j in u} [v_i = c][v_j = k] / (m_u - 1) over units with m_u >= 2
pairable values, n_c = sum_k o_ck, alpha = 1 - (n - 1) sum o_ck d_ck / sum_{c,k} n_c n_k d_ck with the
nominal, ordinal, interval or ratio difference d_ck.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("quorum.consensus.agreement")

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")
Bucket = Literal["day", "week"]
KappaWeights = Literal["linear", "quadratic"] | None

# A pair of annotators enters the kappa matrix only when they co-labelled at least this many items: below it
# kappa's sampling error is larger than any difference a manager could act on.
MIN_PAIR_ITEMS = 10

# Up to this many distinct values the ratio metric uses a dense K x K difference matrix.
_DENSE_DIFFERENCE_MAX = 2048
# 1970-01-01 was a Thursday; ISO weeks start on Monday, 1970-01-05 = epoch day 4.
_EPOCH_MONDAY_DAY = 4


class InvalidLabels(ValueError):
    """Labels that no metric can be computed from (mismatched lengths, non-numeric interval values...)."""


def is_missing_value(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def sorted_unique(values: Iterable[Hashable]) -> list:
    values = list(dict.fromkeys(values))
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _as_1d(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A 1-D array of the values; tuples and other sequences stay single (object) elements."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged sequences
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype != object:
        return arr
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _codes(values: Sequence[Hashable] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the distinct values, sorted (by str() when not comparable), for arbitrary hashables."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "iufUSM" and arr.ndim == 1:
        uniques, inverse = np.unique(arr, return_inverse=True)
        return inverse.astype(np.int64), uniques
    table: dict[Hashable, int] = {}
    codes = np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int64, count=len(values))
    distinct = sorted_unique(table)
    remap = np.fromiter((table[v] for v in distinct), dtype=np.int64, count=len(distinct))
    rank = np.empty_like(remap)
    rank[remap] = np.arange(remap.size)
    ids = np.empty(len(distinct), dtype=object)
    ids[:] = distinct
    return rank[codes], ids


def _to_datetime64(timestamps: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Timestamps (datetime, numpy datetime64, or epoch seconds) as datetime64[ns] in UTC."""
    arr = np.asarray(timestamps)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    if arr.dtype.kind in "iuf":
        return (arr.astype(np.float64) * 1e9).astype("datetime64[ns]")
    out = np.empty(len(arr), dtype="datetime64[ns]")
    for i, t in enumerate(arr.tolist()):
        if isinstance(t, datetime):
            if t.tzinfo is not None:
                t = t.astimezone(timezone.utc).replace(tzinfo=None)
            out[i] = np.datetime64(t, "ns")
        else:
            out[i] = np.datetime64(t, "ns")
    return out


@dataclass(frozen=True, eq=False)
class LabelTable:
    """Labels coded as parallel integer arrays, one row per (item, annotator) pair."""

    item: np.ndarray  # (n,) int64 codes into item_ids
    annotator: np.ndarray  # (n,) int64 codes into annotator_ids
    value: np.ndarray  # (n,) int64 codes into categories
    item_ids: np.ndarray
    annotator_ids: np.ndarray
    categories: np.ndarray  # distinct values; their order is the rank order for ordinal alpha
    time: np.ndarray | None = None  # (n,) datetime64[ns] of each label, if known

    @classmethod
    def from_labels(
        cls,
        items: Sequence[Hashable] | np.ndarray,
        annotators: Sequence[Hashable] | np.ndarray,
        values: Sequence[Hashable] | np.ndarray,
        *,
        categories: Sequence[Hashable] | None = None,
        timestamps: Sequence[Any] | np.ndarray | None = None,
    ) -> LabelTable:
        """Code (item, annotator, value) triples.

        `categories`, when given, fixes the allowed values and their order (ordinal rank order); values
        outside it are dropped with a warning. Otherwise the categories are the distinct values, sorted.
        None / NaN values are missing data and dropped.
        """
        n = len(values)
        if len(items) != n or len(annotators) != n or (timestamps is not None and len(timestamps) != n):
            raise InvalidLabels("items, annotators, values (and timestamps) must have the same length")
        vals = _as_1d(values)
        if vals.dtype.kind == "f":
            keep = ~np.isnan(vals)
        elif vals.dtype == object:
            keep = np.fromiter((not is_missing_value(v) for v in vals), dtype=bool, count=n)
        else:
            keep = np.ones(n, dtype=bool)
        if categories is not None:
            cats = np.empty(len(categories), dtype=object)
            cats[:] = list(categories)
            lookup = {c: i for i, c in enumerate(categories)}
            value_code = np.fromiter((lookup.get(v, -1) if k else -1 for v, k in zip(vals.tolist(), keep)),
                                     dtype=np.int64, count=n)
            outside = keep & (value_code < 0)
            if outside.any():
                log.warning("ignoring %d label(s) with values outside the schema: %s", int(outside.sum()),
                            sorted_unique(vals[outside].tolist())[:10])
            keep &= value_code >= 0
        else:
            kept_vals = vals[keep]
            if kept_vals.dtype == object:
                distinct = sorted_unique(kept_vals.tolist())
                lookup = {c: i for i, c in enumerate(distinct)}
                value_code = np.full(n, -1, dtype=np.int64)
                value_code[keep] = np.fromiter((lookup[v] for v in kept_vals.tolist()), dtype=np.int64,
                                               count=len(kept_vals))
                cats = np.empty(len(distinct), dtype=object)
                cats[:] = distinct
            else:
                cats, inv = np.unique(kept_vals, return_inverse=True)
                value_code = np.full(n, -1, dtype=np.int64)
                value_code[keep] = inv
        item_code, item_ids = _codes(_as_1d(items))
        ann_code, ann_ids = _codes(_as_1d(annotators))
        time = _to_datetime64(timestamps) if timestamps is not None else None
        idx = np.flatnonzero(keep)
        # Last label per (item, annotator) wins: sort by key, stable, keep each run's last row.
        key = item_code[idx] * max(len(ann_ids), 1) + ann_code[idx]
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = key_sorted[1:] != key_sorted[:-1]
        rows = idx[order[last]]
        return cls(item=item_code[rows], annotator=ann_code[rows], value=value_code[rows], item_ids=item_ids,
                   annotator_ids=ann_ids, categories=cats, time=None if time is None else time[rows])

    @classmethod
    def from_reliability_data(cls, data: Sequence[Sequence[Any]] | np.ndarray,
                              *, categories: Sequence[Hashable] | None = None) -> LabelTable:
        """Krippendorff's reliability data: one row per annotator, one column per item, NaN/None = missing."""
        arr = np.asarray(data, dtype=object)
        if arr.ndim != 2:
            raise InvalidLabels("reliability data must be a 2-D annotators x items array")
        n_ann, n_items = arr.shape
        annotators = np.repeat(np.arange(n_ann), n_items)
        items = np.tile(np.arange(n_items), n_ann)
        flat = arr.ravel()
        try:
            numeric = flat.astype(np.float64)
            values: Any = numeric
        except (TypeError, ValueError):
            values = flat
        return cls.from_labels(items, annotators, values, categories=categories)

    @property
    def n_labels(self) -> int:
        return int(self.value.size)

    @property
    def n_items(self) -> int:
        return int(self.item_ids.size)

    @property
    def n_annotators(self) -> int:
        return int(self.annotator_ids.size)

    @property
    def n_categories(self) -> int:
        return int(self.categories.size)

    def subset(self, mask: np.ndarray) -> LabelTable:
        """The same coding (ids and categories unchanged) restricted to the rows where `mask` is true."""
        return LabelTable(item=self.item[mask], annotator=self.annotator[mask], value=self.value[mask],
                          item_ids=self.item_ids, annotator_ids=self.annotator_ids, categories=self.categories,
                          time=None if self.time is None else self.time[mask])

    def counts(self) -> sp.csr_matrix:
        """Sparse (n_items, n_categories) matrix: how many annotators gave each value to each item."""
        return sp.csr_matrix((np.ones(self.n_labels), (self.item, self.value)),
                             shape=(self.n_items, self.n_categories))

    def labels_per_item(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def numeric_categories(self) -> np.ndarray:
        try:
            return self.categories.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidLabels("interval and ratio metrics need numeric values") from exc


# --------------------------------------------------------------------------------------------- percent agreement


def per_item_percent_agreement(table: LabelTable) -> np.ndarray:
    """Fraction of agreeing annotator pairs within each item; NaN for items with fewer than two labels."""
    counts = table.counts()
    m = np.asarray(counts.sum(axis=1)).ravel()
    same = np.asarray(counts.multiply(counts).sum(axis=1)).ravel() - m  # sum_c n_c (n_c - 1)
    pairs = m * (m - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, same / np.where(pairs > 0, pairs, 1), np.nan)


def percent_agreement(table: LabelTable) -> float:
    """Mean over items (with >= 2 labels) of the fraction of agreeing annotator pairs; NaN if none."""
    per_item = per_item_percent_agreement(table)
    valid = ~np.isnan(per_item)
    return float(per_item[valid].mean()) if valid.any() else math.nan


# ------------------------------------------------------------------------------------------------- Cohen's kappa


def _kappa_weights(k: int, weights: KappaWeights) -> np.ndarray:
    if weights is None:
        return 1.0 - np.eye(k)
    idx = np.arange(k)
    diff = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    if weights == "linear":
        return diff
    if weights == "quadratic":
        return diff**2
    raise InvalidLabels(f"unknown kappa weights {weights!r}; use None, 'linear' or 'quadratic'")


def cohen_kappa_from_table(table: np.ndarray, weights: KappaWeights = None) -> float:
    """Cohen's kappa of a K x K contingency table (rows: rater A, columns: rater B).

    With `weights` ('linear' / 'quadratic' in category order) this is weighted kappa. NaN when chance
    disagreement is 0 (both raters always used the same single category) or the table is empty.
    """
    t = np.asarray(table, dtype=np.float64)
    n = t.sum()
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise InvalidLabels("contingency table must be square")
    if n <= 0:
        return math.nan
    w = _kappa_weights(t.shape[0], weights)
    observed = (w * t).sum() / n
    expected = (w * np.outer(t.sum(axis=1), t.sum(axis=0))).sum() / (n * n)
    if expected <= 0:
        return math.nan
    return float(1.0 - observed / expected)


def cohen_kappa(rater_a: Sequence[Hashable], rater_b: Sequence[Hashable], *,
                categories: Sequence[Hashable] | None = None, weights: KappaWeights = None) -> float:
    """Cohen's kappa of two raters' labels on the same items (aligned sequences; None/NaN = missing).

    Items missing from either rater are dropped. `categories` gives the category order (needed for weighted
    kappa on non-sortable values) and may include unused categories.
    """
    if len(rater_a) != len(rater_b):
        raise InvalidLabels("both raters need one entry per item")
    pairs = [(a, b) for a, b in zip(rater_a, rater_b) if not is_missing_value(a) and not is_missing_value(b)]
    cats = list(categories) if categories is not None else sorted_unique([v for p in pairs for v in p])
    lookup = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for a, b in pairs:
        if a in lookup and b in lookup:
            table[lookup[a], lookup[b]] += 1
    return cohen_kappa_from_table(table, weights)


@dataclass(frozen=True)
class PairAgreement:
    annotator_a: Any
    annotator_b: Any
    n_items: int  # items both labelled
    percent_agreement: float
    cohen_kappa: float


def _co_labelled_pairs(table: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (i, j) of every pair of labels on the same item, with annotator(i) < annotator(j)."""
    order = np.lexsort((table.annotator, table.item))
    item_sorted = table.item[order]
    firsts, lasts = [], []
    # Positions whose item still continues `offset` rows further; shrinks each round, so the total work is
    # the number of pairs even when a few items (gold) carry hundreds of labels.
    candidates = np.arange(max(item_sorted.size - 1, 0))
    offset = 1
    while candidates.size:
        candidates = candidates[candidates + offset < item_sorted.size]
        candidates = candidates[item_sorted[candidates + offset] == item_sorted[candidates]]
        firsts.append(order[candidates])
        lasts.append(order[candidates + offset])
        offset += 1
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts), np.concatenate(lasts)


def pairwise_contingency(table: LabelTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every annotator pair that co-labelled an item: (annotator a codes, b codes, (P, K, K) tables)."""
    i, j = _co_labelled_pairs(table)
    a, b = table.annotator[i], table.annotator[j]
    n_ann, k = table.n_annotators, table.n_categories
    pair_key, pair_idx = np.unique(a * n_ann + b, return_inverse=True)
    cells = (pair_idx * k + table.value[i]) * k + table.value[j]
    tables = np.bincount(cells, minlength=pair_key.size * k * k).reshape(pair_key.size, k, k)
    return pair_key // n_ann, pair_key % n_ann, tables


def _kappa_batch(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = tables.astype(np.float64)
    n = t.sum(axis=(1, 2))
    po = np.trace(t, axis1=1, axis2=2) / n
    pe = np.einsum("pk,pk->p", t.sum(axis=2), t.sum(axis=1)) / (n * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(pe < 1.0, (po - pe) / (1.0 - pe), np.nan)
    return po, kappa


def pairwise_agreement(table: LabelTable, *, min_items: int = MIN_PAIR_ITEMS) -> list[PairAgreement]:
    """Percent agreement and Cohen's kappa for every annotator pair that co-labelled >= `min_items` items."""
    a, b, tables = pairwise_contingency(table)
    n = tables.sum(axis=(1, 2))
    keep = n >= max(min_items, 1)
    a, b, tables, n = a[keep], b[keep], tables[keep], n[keep]
    po, kappa = _kappa_batch(tables)
    ids = table.annotator_ids
    return [PairAgreement(_py(ids[x]), _py(ids[y]), int(c), float(p), float(k))
            for x, y, c, p, k in zip(a.tolist(), b.tolist(), n.tolist(), po.tolist(), kappa.tolist())]


def kappa_matrix(table: LabelTable, *, min_items: int = MIN_PAIR_ITEMS) -> tuple[np.ndarray, np.ndarray]:
    """(annotator ids, symmetric A x A matrix of Cohen's kappa); NaN where a pair co-labelled too few items.

    The diagonal is 1 for annotators with at least one kappa-eligible partner and NaN otherwise.
    """
    a, b, tables = pairwise_contingency(table)
    n = tables.sum(axis=(1, 2))
    keep = n >= max(min_items, 1)
    _, kappa = _kappa_batch(tables[keep])
    size = table.n_annotators
    matrix = np.full((size, size), np.nan)
    matrix[a[keep], b[keep]] = kappa
    matrix[b[keep], a[keep]] = kappa
    has_partner = np.zeros(size, dtype=bool)
    has_partner[a[keep]] = True
    has_partner[b[keep]] = True
    matrix[np.flatnonzero(has_partner), np.flatnonzero(has_partner)] = 1.0
    return table.annotator_ids, matrix


# ------------------------------------------------------------------------------------------------- Fleiss' kappa


def fleiss_kappa_from_counts(counts: np.ndarray | sp.spmatrix) -> float:
    """Fleiss' kappa from an (items x categories) count matrix; rows may have different totals (see module doc)."""
    if sp.issparse(counts):
        c = sp.csr_matrix(counts, dtype=np.float64)
        m = np.asarray(c.sum(axis=1)).ravel()
        sq = np.asarray(c.multiply(c).sum(axis=1)).ravel()
        rated = m >= 2
        col = np.asarray(c[rated].sum(axis=0)).ravel()
    else:
        c = np.asarray(counts, dtype=np.float64)
        m = c.sum(axis=1)
        sq = (c * c).sum(axis=1)
        rated = m >= 2
        col = c[rated].sum(axis=0)
    if not rated.any():
        return math.nan
    p_i = (sq[rated] - m[rated]) / (m[rated] * (m[rated] - 1))
    p_bar = p_i.mean()
    p_j = col / col.sum()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0:
        return math.nan
    return float((p_bar - p_e) / (1.0 - p_e))


def fleiss_kappa(table: LabelTable) -> float:
    return fleiss_kappa_from_counts(table.counts())


# ------------------------------------------------------------------------------------------ Krippendorff's alpha


def _pairable(table: LabelTable) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Counts of units with >= 2 values, their sizes m_u, and the rows of `table` that are pairable."""
    counts = table.counts()
    m = np.asarray(counts.sum(axis=1)).ravel()
    unit_ok = m >= 2
    return counts[unit_ok], m[unit_ok], unit_ok[table.item]


def coincidence_matrix(table: LabelTable) -> np.ndarray:
    """Krippendorff's K x K coincidence matrix o_ck (units with fewer than two values contribute nothing)."""
    counts, m, _ = _pairable(table)
    weight = sp.diags(1.0 / (m - 1))
    o = (counts.T @ weight @ counts).toarray()
    o -= np.diag(np.asarray((weight @ counts).sum(axis=0)).ravel())
    return o


def _ordinal_ranks(n_c: np.ndarray) -> np.ndarray:
    """Mid-ranks of each category under the pooled value frequencies (Krippendorff's ordinal metric)."""
    return np.cumsum(n_c) - n_c / 2.0


def difference_matrix(level: Level, categories: np.ndarray, n_c: np.ndarray) -> np.ndarray:
    """Squared difference d_ck between category values for a metric (`n_c`: pooled frequencies, for ordinal)."""
    k = len(categories)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "ordinal":
        r = _ordinal_ranks(n_c)
        return (r[:, None] - r[None, :]) ** 2
    x = np.asarray(categories, dtype=np.float64)
    if level == "interval":
        return (x[:, None] - x[None, :]) ** 2
    if level == "ratio":
        s = x[:, None] + x[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((x[:, None] - x[None, :]) / np.where(s == 0, 1.0, s)) ** 2
        return np.where(s == 0, 0.0, d)
    raise InvalidLabels(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")


def _ratio_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (a - b) / (a + b)
    d *= d
    return np.nan_to_num(d, copy=False, nan=0.0)  # 0/0: both values 0, no difference


def _ratio_expected(x: np.ndarray, n_c: np.ndarray, block: int = 1024) -> float:
    """sum_{c,k} n_c n_k d_ck for the ratio metric, in row blocks so memory stays O(block * K).

    O(K^2) in the number K of distinct values: ~0.5 s at K = 10,000 (the only metric that is not linear).
    """
    used = n_c > 0
    x, n_c = x[used], n_c[used]
    total = 0.0
    for start in range(0, x.size, block):
        d = _ratio_difference(x[start:start + block, None], x[None, :])
        total += float(n_c[start:start + block] @ (d @ n_c))
    return total


@dataclass(frozen=True)
class _AlphaParts:
    alpha: float
    observed: float  # D_o
    expected: float  # D_e
    n_pairable: float  # n, the number of pairable values
    unit_observed: np.ndarray  # per pairable unit: mean pairwise difference d_u (D_o = sum m_u d_u / n)
    unit_rows: np.ndarray  # item codes of the pairable units


def _alpha_parts(table: LabelTable, level: Level) -> _AlphaParts:
    if level not in LEVELS:
        raise InvalidLabels(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    counts, m, _ = _pairable(table)
    units = np.flatnonzero(table.labels_per_item() >= 2)
    n = float(m.sum())
    if n == 0:
        return _AlphaParts(math.nan, math.nan, math.nan, 0.0, np.zeros(0), units)
    n_c = np.asarray(counts.sum(axis=0)).ravel()
    pair_count = m * (m - 1)
    if level == "nominal":
        same = np.asarray(counts.multiply(counts).sum(axis=1)).ravel() - m
        unit_obs = 1.0 - same / pair_count
        expected = (n * n - float(n_c @ n_c)) / (n * (n - 1))
    elif level in ("interval", "ordinal"):
        # Both are squared differences of a per-category score (the value, or its mid-rank), so the closed
        # form sum_{i,j} (a_i - a_j)^2 = 2m sum a^2 - 2 (sum a)^2 avoids any K x K matrix.
        x = table.numeric_categories() if level == "interval" else _ordinal_ranks(n_c)
        s1 = counts @ x
        s2 = counts @ (x * x)
        unit_obs = np.maximum(2 * m * s2 - 2 * s1 * s1, 0.0) / pair_count
        tot1, tot2 = float(n_c @ x), float(n_c @ (x * x))
        expected = max(2 * n * tot2 - 2 * tot1 * tot1, 0.0) / (n * (n - 1))
    else:
        x = table.numeric_categories()
        if x.size <= _DENSE_DIFFERENCE_MAX:
            d = _ratio_difference(x[:, None], x[None, :])
            within = np.asarray(counts.multiply(counts @ d).sum(axis=1)).ravel()  # n_u^T d n_u (d_cc = 0)
        else:
            i, j = _co_labelled_pairs(table)
            pair_d = _ratio_difference(x[table.value[i]], x[table.value[j]])
            within = np.bincount(table.item[i], weights=2 * pair_d, minlength=table.n_items)[units]
        unit_obs = within / pair_count
        expected = _ratio_expected(x, n_c) / (n * (n - 1))
    observed = float((m * unit_obs).sum() / n)
    alpha = 1.0 - observed / expected if expected > 0 else math.nan
    return _AlphaParts(alpha, observed, expected, n, unit_obs, units)


def krippendorff_alpha(table: LabelTable, level: Level = "nominal") -> float:
    """Krippendorff's alpha at the given level of measurement; NaN when not estimable."""
    return _alpha_parts(table, level).alpha


def krippendorff_alpha_reliability_data(data: Sequence[Sequence[Any]] | np.ndarray, level: Level = "nominal",
                                        *, categories: Sequence[Hashable] | None = None) -> float:
    """Alpha of annotators x items reliability data (NaN/None = missing), as in Krippendorff's examples."""
    return krippendorff_alpha(LabelTable.from_reliability_data(data, categories=categories), level)


# --------------------------------------------------------------------------------------------------- reports


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class TaskAgreement:
    """Agreement among one task's labels.

    `alpha` is the task's unit-level alpha, 1 - d_u / D_e: its mean pairwise difference against the project's
    expected difference, so it is comparable across tasks and the n_labels-weighted mean of the tasks'
    values is the project's alpha.
    """

    item: Any
    n_labels: int
    percent_agreement: float
    alpha: float


def per_task_agreement(table: LabelTable, level: Level = "nominal") -> list[TaskAgreement]:
    """Agreement of every item with at least one label (single-label items get NaN agreement)."""
    parts = _alpha_parts(table, level)
    per_item_pa = per_item_percent_agreement(table)
    m = table.labels_per_item()
    alpha = np.full(table.n_items, np.nan)
    if parts.expected and parts.expected > 0:
        alpha[parts.unit_rows] = 1.0 - parts.unit_observed / parts.expected
    ids = table.item_ids
    return [TaskAgreement(_py(ids[i]), int(m[i]), float(per_item_pa[i]), float(alpha[i]))
            for i in np.flatnonzero(m > 0).tolist()]


@dataclass(frozen=True)
class AgreementSummary:
    n_items: int  # items with at least one label
    n_pairable_items: int  # items with at least two labels
    n_labels: int
    n_annotators: int
    percent_agreement: float
    fleiss_kappa: float
    alpha: float
    level: Level
    observed_disagreement: float
    expected_disagreement: float


def summarize(table: LabelTable, level: Level = "nominal") -> AgreementSummary:
    """The project-level figures: percent agreement, Fleiss' kappa and alpha at `level`."""
    parts = _alpha_parts(table, level)
    m = table.labels_per_item()
    return AgreementSummary(
        n_items=int((m > 0).sum()), n_pairable_items=int((m >= 2).sum()), n_labels=table.n_labels,
        n_annotators=int(np.unique(table.annotator).size), percent_agreement=percent_agreement(table),
        fleiss_kappa=fleiss_kappa(table), alpha=parts.alpha, level=level,
        observed_disagreement=parts.observed, expected_disagreement=parts.expected)


@dataclass(frozen=True)
class ProjectAgreement:
    summary: AgreementSummary
    pairs: list[PairAgreement]


def project_agreement(table: LabelTable, level: Level = "nominal", *,
                      min_pair_items: int = MIN_PAIR_ITEMS) -> ProjectAgreement:
    return ProjectAgreement(summary=summarize(table, level),
                            pairs=pairwise_agreement(table, min_items=min_pair_items))


@dataclass(frozen=True)
class TimeBucketAgreement:
    start: datetime  # UTC, naive start of the day / ISO week (Monday)
    summary: AgreementSummary


def bucket_starts(times: np.ndarray, bucket: Bucket) -> np.ndarray:
    """Start of the UTC day or ISO week (Monday 00:00) containing each datetime64 timestamp."""
    days = times.astype("datetime64[D]").astype(np.int64)
    if bucket == "day":
        start = days
    elif bucket == "week":
        start = (days - _EPOCH_MONDAY_DAY) // 7 * 7 + _EPOCH_MONDAY_DAY
    else:
        raise InvalidLabels(f"unknown bucket {bucket!r}; use 'day' or 'week'")
    return start.astype("datetime64[D]")


def agreement_over_time(table: LabelTable, bucket: Bucket = "week",
                        level: Level = "nominal") -> list[TimeBucketAgreement]:
    """Agreement per day / week, each item placed in the bucket of its most recent label.

    An item's agreement is a property of all its labels together, so the item (not each label) is bucketed,
    at the time it reached its current label set. Buckets without labels are omitted.
    """
    if table.time is None:
        raise InvalidLabels("agreement over time needs label timestamps")
    if table.n_labels == 0:
        return []
    last = np.full(table.n_items, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, table.item, table.time.astype(np.int64))
    item_bucket = bucket_starts(last.astype("datetime64[ns]"), bucket)
    row_bucket = item_bucket[table.item]
    out = []
    for start in np.unique(row_bucket):
        sub = table.subset(row_bucket == start)
        out.append(TimeBucketAgreement(start=start.astype("datetime64[s]").astype(datetime),
                                       summary=summarize(sub, level)))
    return out
