"""The INT8 acceptance gate: quantized scores must give the same miss and false-detection rates as fp32.

Each model gets its own threshold re-derived on validation with the product's target miss rate (INT8 shifts
scores slightly, so reusing the fp32 threshold would judge a well-ranked model unfairly); then both are
measured on the test split and INT8 is accepted only if each rate is within the tolerance of fp32's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspection.metrics import false_detection_rate, miss_rate
from training.calibration import calibrate_threshold

DEFAULT_TOLERANCE = 0.005  # 0.5 percentage points


@dataclass(frozen=True)
class Int8Decision:
    accepted: bool
    fp32_threshold: float
    int8_threshold: float
    fp32_miss_rate: float | None
    int8_miss_rate: float | None
    fp32_false_detection_rate: float | None
    int8_false_detection_rate: float | None
    tolerance: float
    reason: str


def _gap(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b)


def int8_gate(
    val_labels: np.ndarray,
    val_fp32: np.ndarray,
    val_int8: np.ndarray,
    test_labels: np.ndarray,
    test_fp32: np.ndarray,
    test_int8: np.ndarray,
    target_miss_rate: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Int8Decision:
    """Accept INT8 only if its test miss and false-detection rates are each within `tolerance` of fp32's."""
    fp32_threshold = calibrate_threshold(val_labels, val_fp32, target_miss_rate).threshold
    int8_threshold = calibrate_threshold(val_labels, val_int8, target_miss_rate).threshold
    fp32_miss = miss_rate(test_labels, test_fp32, fp32_threshold).rate
    int8_miss = miss_rate(test_labels, test_int8, int8_threshold).rate
    fp32_fdr = false_detection_rate(test_labels, test_fp32, fp32_threshold).rate
    int8_fdr = false_detection_rate(test_labels, test_int8, int8_threshold).rate
    miss_gap, fdr_gap = _gap(fp32_miss, int8_miss), _gap(fp32_fdr, int8_fdr)
    accepted = miss_gap <= tolerance + 1e-12 and fdr_gap <= tolerance + 1e-12
    verdict = "accepted" if accepted else "refused, serving fp32"
    reason = (
        f"INT8 {verdict}: test miss rate {_pct(int8_miss)} vs fp32 {_pct(fp32_miss)} (gap {100 * miss_gap:.2f} pp), "
        f"false-detection rate {_pct(int8_fdr)} vs {_pct(fp32_fdr)} (gap {100 * fdr_gap:.2f} pp), "
        f"tolerance {100 * tolerance:.2f} pp"
    )
    return Int8Decision(
        accepted, fp32_threshold, int8_threshold, fp32_miss, int8_miss, fp32_fdr, int8_fdr, tolerance, reason
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
