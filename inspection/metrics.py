"""Quality metrics with their sample sizes: miss rate, false-detection rate, AUROC, ROC, confusion matrix.

Numpy only, because the torch-free server imports this module too. Labels: 1 = defective, 0 = good.
A part is flagged defective when score >= threshold, everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0.0, 1.0) when n == 0."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # The exact bounds at k == 0 and k == n are 0 and 1; pin them so rounding never shows 1e-17 or 0.9999999.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def _binary_arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (bool defect mask, float scores)."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(bool), s


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], sorted_vals.size]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count half); None if either class is missing."""
    y, s = _binary_arrays(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr, thresholds descending), starting at (0, 0) with threshold +inf.

    A rate whose class is absent is NaN, since it is undefined rather than zero.
    """
    y, s = _binary_arrays(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # One point per distinct score: the last index of each run of equal scores.
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) if s.size else np.array([], int)
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(~y_sorted)[last]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(last.size + 1, np.nan)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(last.size + 1, np.nan)
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds


@dataclass(frozen=True)
class RateEstimate:
    """A rate k / n with its Wilson 95% interval; rate is None when n == 0 (nothing to measure)."""

    rate: float | None
    k: int
    n: int
    ci95: tuple[float, float]


def _estimate(k: int, n: int) -> RateEstimate:
    return RateEstimate(rate=k / n if n else None, k=k, n=n, ci95=wilson_interval(k, n))


def miss_rate(labels: ArrayLike, scores: ArrayLike, threshold: float) -> RateEstimate:
    """Fraction of defective parts (label 1) passed as good (score < threshold)."""
    y, s = _binary_arrays(labels, scores)
    return _estimate(int((s[y] < threshold).sum()), int(y.sum()))


def false_detection_rate(labels: ArrayLike, scores: ArrayLike, threshold: float) -> RateEstimate:
    """Fraction of good parts (label 0) flagged as defective (score >= threshold)."""
    y, s = _binary_arrays(labels, scores)
    return _estimate(int((s[~y] >= threshold).sum()), int((~y).sum()))


IQR_TO_SIGMA = 1.349  # the interquartile range of a normal distribution, in standard deviations


def robust_spread(values: ArrayLike, floor: float) -> float:
    """IQR / 1.349 (a spread one far-off value cannot inflate), the std when that is at most `floor` (scores that
    barely vary), and never below `floor`."""
    v = np.asarray(values, dtype=np.float64).ravel()
    q1, q3 = np.quantile(v, [0.25, 0.75])
    spread = float(q3 - q1) / IQR_TO_SIGMA
    if spread <= floor:
        spread = float(v.std())
    return max(spread, floor)


def miss_rate_at_false_detection(labels: ArrayLike, scores: ArrayLike, fdr: float) -> RateEstimate:
    """Miss rate at the strictest threshold that flags at most a fraction `fdr` of the good parts.

    A point of the ROC curve (1 - TPR at FPR <= fdr), to compare rankings at one operating point; it reads the
    threshold off these very labels, so it measures a ranking, not a deployable threshold.
    """
    y, s = _binary_arrays(labels, scores)
    good = np.sort(s[~y])[::-1]
    allowed = int(np.floor(fdr * good.size + 1e-9))
    if good.size == 0 or allowed >= good.size:
        return _estimate(0, int(y.sum()))  # every part may be flagged: nothing is missed
    # Flag score > the (allowed + 1)-th highest good score: at most `allowed` good parts (ties pass).
    return _estimate(int((s[y] <= good[allowed]).sum()), int(y.sum()))


def confusion_matrix(true_labels: Sequence[str], predicted_labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class, in the order of `classes`."""
    if len(true_labels) != len(predicted_labels):
        raise ValueError(f"true and predicted labels differ in length: {len(true_labels)} vs {len(predicted_labels)}")
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError(f"classes contain duplicates: {list(classes)}")
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for true, pred in zip(true_labels, predicted_labels, strict=True):
        if true not in index or pred not in index:
            unknown = true if true not in index else pred
            raise ValueError(f"label {unknown!r} is not one of the classes {list(classes)}")
        matrix[index[true], index[pred]] += 1
    return matrix
