"""Threshold calibration on validation: the highest threshold whose miss rate meets the target miss rate, or the
lowest whose false-detection rate meets the false-detection budget (the product config sets one of the two).

A part is flagged defective when score >= threshold. The threshold is placed midway between two distinct
score values, never on one, so a tiny numeric difference (ONNX Runtime vs PyTorch) cannot flip a verdict
that calibration counted. The rules themselves live in inspection.operating_curve, where `inspection models
threshold` applies them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from inspection.metrics import false_detection_rate, miss_rate
from inspection.operating_curve import (
    CalibrationTarget,
    allowed_errors,
    midpoint_below,
    threshold_for_false_detection_rate,
    threshold_for_miss_rate,
)


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and what it achieved on the validation split."""

    threshold: float
    target_miss_rate: float | None  # None when the target is a false-detection budget
    method: Literal["miss_rate", "false_detection_rate", "good_quantile"]
    val_miss_rate: float | None
    val_false_detection_rate: float | None
    n_good: int
    n_defect: int
    note: str
    target_false_detection_rate: float | None = None


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


def _calibrate_on_misses(defect: np.ndarray, s: np.ndarray, target: float) -> tuple[float, int]:
    """Highest threshold that misses at most floor(target * n_defect) defects; returns it and that budget."""
    n_defect = int(defect.sum())
    return threshold_for_miss_rate(defect, s, target), min(allowed_errors(target, n_defect), n_defect - 1)


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


def calibrate_false_detection(
    labels: ArrayLike, scores: ArrayLike, target_false_detection_rate: float, fallback_miss_rate: float = 0.02
) -> Calibration:
    """Choose the threshold with fewest misses whose validation false-detection rate is <= the budget."""
    budget = target_false_detection_rate
    if not 0.0 <= budget < 1.0:
        raise ValueError(f"target_false_detection_rate must be in [0, 1), got {budget}")
    y, s = _validate(labels, scores, fallback_miss_rate, 1.0)
    n_defect, n_good = int(y.sum()), int((~y).sum())
    if n_good == 0:
        # Without good parts the budget cannot be measured; the miss-rate rule at least controls the misses.
        fallback = calibrate_threshold(y, s, fallback_miss_rate)
        note = f"validation split has no good images, so the false-detection budget cannot be applied; {fallback.note}"
        return Calibration(**{**fallback.__dict__, "note": note, "target_false_detection_rate": budget})
    threshold = threshold_for_false_detection_rate(y, s, budget)
    flagged = false_detection_rate(y, s, threshold)
    allowed = allowed_errors(budget, n_good)
    note = (
        f"lowest threshold with validation false-detection rate <= {budget:g}: flags {flagged.k} of {n_good} "
        f"good images (at most {allowed} allowed)"
    )
    if n_defect == 0:
        note += "; validation split has no defective images, so the miss rate is unknown"
    return Calibration(
        threshold=threshold,
        target_miss_rate=None,
        method="false_detection_rate",
        val_miss_rate=miss_rate(y, s, threshold).rate,
        val_false_detection_rate=flagged.rate,
        n_good=n_good,
        n_defect=n_defect,
        note=note,
        target_false_detection_rate=budget,
    )


def calibrate_to_target(labels: ArrayLike, scores: ArrayLike, target: CalibrationTarget) -> Calibration:
    """Calibrate to the product's target: a miss rate (`calibrate_threshold`) or a false-detection budget."""
    if target.metric == "miss_rate":
        return calibrate_threshold(labels, scores, target.value)
    return calibrate_false_detection(labels, scores, target.value)


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
    return midpoint_below(best, s)
