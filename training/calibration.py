"""Threshold calibration: the highest threshold whose validation miss rate meets the target.

A part is flagged defective when score >= threshold. The threshold is placed midway between two distinct
score values, never on one, so a tiny numeric difference (ONNX Runtime vs PyTorch) cannot flip a verdict
that calibration counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from inspection.metrics import false_detection_rate, miss_rate


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and what it achieved on the validation split."""

    threshold: float
    target_miss_rate: float
    method: Literal["miss_rate", "good_quantile"]
    val_miss_rate: float | None
    val_false_detection_rate: float | None
    n_good: int
    n_defect: int
    note: str


def _ordinal(value: float) -> str:
    """'99th', '95th', '99.5th', '1st': the percentile as people say it."""
    text = f"{value:g}"
    if "." in text or (value % 100) in (11, 12, 13):
        return f"{text}th"
    return text + {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")


def _validate(labels: ArrayLike, scores: ArrayLike, target: float, quantile: float) -> tuple[np.ndarray, ...]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.size == 0 and s.size == 0:
        raise ValueError("cannot calibrate a threshold on an empty validation split")
    if y.size != s.size:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} validation score(s) are NaN; the model output is broken")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target_miss_rate must be in [0, 1), got {target}")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"good_quantile must be in (0, 1], got {quantile}")
    return y.astype(bool), s


def _midpoint_below(value: float, others: np.ndarray) -> float:
    """Midway between `value` and the next lower score; with none lower, a margin below it."""
    lower = others[others < value]
    if lower.size:
        return float((value + lower.max()) / 2.0)
    # Nothing lower: every score is >= value, so any threshold below it flags them all.
    floor = 0.0 if value > 0.0 else value - 1.0
    return (value + floor) / 2.0


def _calibrate_on_misses(defect: np.ndarray, s: np.ndarray, target: float) -> tuple[float, int]:
    """Highest threshold that misses at most floor(target * n_defect) defects; returns it and that budget."""
    d = np.sort(s[defect])[::-1]
    # Tolerance: 0.07 * 100 is 7.000000000000001 in floats; < 1 so target < 1 never allows missing all.
    allowed = min(math.floor(target * d.size + 1e-9), d.size - 1)
    must_catch = float(d[d.size - 1 - allowed])  # lowest defect score that still has to be flagged
    return _midpoint_below(must_catch, s), allowed


def _calibrate_on_good(s: np.ndarray, quantile: float) -> float:
    """Threshold at the quantile of the good scores, nudged midway to the next score above."""
    q = float(np.quantile(s, quantile))
    above = s[s > q]
    if above.size:
        return float((q + above.min()) / 2.0)
    # Quantile is the top score: stay above it, but scores are probabilities, so never exceed 1.0.
    return (q + 1.0) / 2.0 if q < 1.0 else q


def calibrate_threshold(
    labels: ArrayLike, scores: ArrayLike, target_miss_rate: float = 0.02, good_quantile: float = 0.99
) -> Calibration:
    """Choose the threshold with fewest false detections whose validation miss rate is <= the target."""
    y, s = _validate(labels, scores, target_miss_rate, good_quantile)
    n_defect, n_good = int(y.sum()), int((~y).sum())

    if n_defect == 0:
        # Without defects the miss-rate rule would flag everything; bound false detections instead.
        threshold = _calibrate_on_good(s, good_quantile)
        method: Literal["miss_rate", "good_quantile"] = "good_quantile"
        note = (
            "validation split has no defective images; threshold set at the "
            f"{_ordinal(good_quantile * 100)} percentile of good scores, miss rate unknown"
        )
    else:
        threshold, allowed = _calibrate_on_misses(y, s, target_miss_rate)
        method = "miss_rate"
        missed = miss_rate(y, s, threshold)
        note = (
            f"highest threshold with validation miss rate <= {target_miss_rate:g}: "
            f"misses {missed.k} of {n_defect} defective images (at most {allowed} allowed)"
        )
        if n_good == 0:
            note += "; validation split has no good images, so the false-detection rate is unknown"

    return Calibration(
        threshold=threshold,
        target_miss_rate=target_miss_rate,
        method=method,
        val_miss_rate=miss_rate(y, s, threshold).rate,
        val_false_detection_rate=false_detection_rate(y, s, threshold).rate,
        n_good=n_good,
        n_defect=n_defect,
        note=note,
    )


def max_accuracy_threshold(labels: ArrayLike, scores: ArrayLike) -> float:
    """The threshold with the highest validation accuracy (the balanced operating point papers quote).

    Reported beside the miss-rate threshold so a QA engineer sees what the miss-rate target costs; it is
    chosen on validation like the other, never on the test split it is reported on.
    """
    y, s = _validate(labels, scores, 0.0, 1.0)
    candidates = np.unique(s)
    # Flagging at candidate c: score >= c. Accuracy for every candidate at once via sorted cumulative counts.
    order = np.argsort(s)
    sorted_scores, sorted_defect = s[order], y[order]
    first = np.searchsorted(sorted_scores, candidates, side="left")
    good_below = np.cumsum(~sorted_defect)
    defect_below = np.cumsum(sorted_defect)
    n_good_passed = np.where(first > 0, good_below[first - 1], 0)
    n_defect_passed = np.where(first > 0, defect_below[first - 1], 0)
    correct = n_good_passed + (int(y.sum()) - n_defect_passed)
    best = float(candidates[int(np.argmax(correct))])
    return _midpoint_below(best, s)
