"""The miss rate / false-detection rate trade-off of one scored, labeled image set, at every threshold.

A part is flagged when score >= threshold. Between two neighbouring distinct scores every threshold gives the same
verdicts, so the curve has one point per gap: below the lowest score (flag all), midway between neighbours, and
above the highest (flag none). Every rate carries its Wilson 95% interval and sample size. The rules that pick a
threshold for a target (`threshold_for_miss_rate`, `threshold_for_false_detection_rate`) and the rule that says
when a validation set is too small to pick one (`unsupported_target`) live here, so training's calibration, the
`inspection models threshold` command and the server's curve endpoint apply the same ones. Numpy only: the
torch-free server imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from inspection.metrics import Z95, wilson_interval

MAX_CURVE_POINTS = 150  # what a report keeps of a curve (a validation split of thousands has thousands of gaps)
# 0.29 * 100 is 28.999999999999996 in floats: counts are floored with a tolerance so 29 stay allowed.
COUNT_TOLERANCE = 1e-9

TargetMetric = Literal["miss_rate", "false_detection_rate"]


def labeled_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(bool defect mask, float64 scores), checked: same length, labels 0/1, no NaN."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (good) or 1 (defective)")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} score(s) are NaN; the model output is broken")
    return y.astype(bool), s


def midpoint_below(value: float, scores: np.ndarray) -> float:
    """Midway between `value` and the next lower score; with none lower, a margin below it (never below 0 for
    a positive value, so probabilities stay probabilities)."""
    lower = scores[scores < value]
    if lower.size:
        return float((value + lower.max()) / 2.0)
    floor = 0.0 if value > 0.0 else value - 1.0
    return (value + floor) / 2.0


def midpoint_above(value: float, scores: np.ndarray) -> float:
    """Midway between `value` and the next higher score; with none higher, a margin above it (never above 1 for
    a value below 1)."""
    higher = scores[scores > value]
    if higher.size:
        return float((value + higher.min()) / 2.0)
    ceiling = 1.0 if value < 1.0 else value + 1.0
    return (value + ceiling) / 2.0


def candidate_thresholds(scores: ArrayLike) -> np.ndarray:
    """One threshold per distinct set of verdicts: below the lowest score, midway between neighbours, above the top."""
    distinct = np.unique(np.asarray(scores, dtype=np.float64))
    if distinct.size == 0:
        return np.zeros(0)
    low = midpoint_below(float(distinct[0]), distinct)
    high = midpoint_above(float(distinct[-1]), distinct)
    return np.r_[low, (distinct[:-1] + distinct[1:]) / 2.0, high]


def wilson_intervals(k: np.ndarray, n: int, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """`inspection.metrics.wilson_interval` for many k of the same n at once: (lows, highs)."""
    k = np.asarray(k, dtype=np.float64)
    if n == 0:
        return np.zeros_like(k), np.ones_like(k)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = np.where(k == 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(k == n, 1.0, np.minimum(1.0, centre + half))
    return low, high


def error_counts(defect: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(defects missed, good parts flagged) at each threshold, from two sorted arrays and binary search."""
    defect_scores, good_scores = np.sort(scores[defect]), np.sort(scores[~defect])
    missed = np.searchsorted(defect_scores, thresholds, side="left")  # defects scoring below the threshold
    flagged = good_scores.size - np.searchsorted(good_scores, thresholds, side="left")
    return missed, flagged


def _rates(k: np.ndarray, n: int) -> tuple[list[float | None], np.ndarray, np.ndarray]:
    low, high = wilson_intervals(k, n)
    rates: list[float | None] = [None] * k.size if n == 0 else np.round(k / n, 6).tolist()
    return rates, np.round(low, 6), np.round(high, 6)


def curve_points(labels: ArrayLike, scores: ArrayLike, thresholds: ArrayLike) -> list[dict[str, Any]]:
    """The point of the curve at each threshold: both rates with Wilson 95% intervals, counts and sample sizes."""
    defect, s = labeled_scores(labels, scores)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    missed, flagged = error_counts(defect, s, t)
    n_defect, n_good = int(defect.sum()), int((~defect).sum())
    miss, miss_low, miss_high = _rates(missed, n_defect)
    fdr, fdr_low, fdr_high = _rates(flagged, n_good)
    return [
        {
            "threshold": float(t[i]),
            "miss_rate": miss[i],
            "miss_rate_ci95": [float(miss_low[i]), float(miss_high[i])],
            "n_missed": int(missed[i]),
            "n_defect": n_defect,
            "false_detection_rate": fdr[i],
            "false_detection_rate_ci95": [float(fdr_low[i]), float(fdr_high[i])],
            "n_false_detections": int(flagged[i]),
            "n_good": n_good,
        }
        for i in range(t.size)
    ]


def thin_indices(miss: np.ndarray, fdr: np.ndarray, max_points: int, keep: Sequence[int] = ()) -> np.ndarray:
    """At most about `max_points` indices spread evenly along the curve's length in (miss, fdr) space, always with
    both ends and every index in `keep`."""
    m = miss.size
    if m <= max_points:
        return np.arange(m)
    length = np.r_[0.0, np.cumsum(np.abs(np.diff(miss)) + np.abs(np.diff(fdr)))]
    wanted = np.linspace(0.0, length[-1], max(max_points - len(keep), 2))
    chosen = np.clip(np.searchsorted(length, wanted, side="left"), 0, m - 1)
    return np.unique(np.r_[chosen, 0, m - 1, np.asarray(keep, dtype=np.int64)])


def operating_curve(
    labels: ArrayLike, scores: ArrayLike, keep: Sequence[float] = (), max_points: int = MAX_CURVE_POINTS
) -> list[dict[str, Any]]:
    """The curve at every candidate threshold plus `keep` (e.g. the served one), thinned to about `max_points`
    points that always include those of `keep`; ordered by threshold, so miss rates rise and false detections
    fall along it."""
    defect, s = labeled_scores(labels, scores)
    kept = np.asarray(keep, dtype=np.float64).ravel()
    thresholds = np.union1d(candidate_thresholds(s), kept)
    if thresholds.size == 0:
        return []
    missed, flagged = error_counts(defect, s, thresholds)
    n_defect, n_good = max(int(defect.sum()), 1), max(int((~defect).sum()), 1)
    keep_index = np.searchsorted(thresholds, kept)
    chosen = thin_indices(missed / n_defect, flagged / n_good, max_points, keep_index.tolist())
    return curve_points(defect, s, thresholds[chosen])


def point_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> dict[str, Any]:
    """The curve's point at one threshold."""
    return curve_points(labels, scores, [threshold])[0]


def allowed_errors(rate: float, n: int) -> int:
    """How many of n parts a target rate allows to be wrong: floor(rate * n), with a float tolerance."""
    return math.floor(rate * n + COUNT_TOLERANCE)


def threshold_for_miss_rate(labels: ArrayLike, scores: ArrayLike, target: float) -> float:
    """The highest threshold whose miss rate on these parts is <= target (fewest false detections under it).

    Never misses every defect: with target < 1 at least the top-scoring defect is caught."""
    defect, s = labeled_scores(labels, scores)
    d = np.sort(s[defect])[::-1]
    if d.size == 0:
        raise ValueError("no defective parts: a miss rate cannot be measured")
    allowed = min(allowed_errors(target, d.size), d.size - 1)
    must_catch = float(d[d.size - 1 - allowed])  # the lowest defect score that still has to be flagged
    return midpoint_below(must_catch, s)


def threshold_for_false_detection_rate(labels: ArrayLike, scores: ArrayLike, budget: float) -> float:
    """The lowest threshold whose false-detection rate on these parts is <= budget (fewest misses under it)."""
    defect, s = labeled_scores(labels, scores)
    g = np.sort(s[~defect])[::-1]
    if g.size == 0:
        raise ValueError("no good parts: a false-detection rate cannot be measured")
    allowed = allowed_errors(budget, g.size)
    if allowed >= g.size:
        return midpoint_below(float(s.min()), s)  # every good part may be flagged: flag everything
    must_pass = float(g[allowed])  # the highest good score that has to pass; every one above it may be flagged
    return midpoint_above(must_pass, s)


def threshold_for_target(labels: ArrayLike, scores: ArrayLike, metric: TargetMetric, value: float) -> float:
    """`threshold_for_miss_rate` or `threshold_for_false_detection_rate`, by the target's metric."""
    if metric == "miss_rate":
        return threshold_for_miss_rate(labels, scores, value)
    return threshold_for_false_detection_rate(labels, scores, value)


@dataclass(frozen=True)
class TargetWords:
    rate: str  # "miss rate"
    parts: str  # "defective"


WORDS: dict[TargetMetric, TargetWords] = {
    "miss_rate": TargetWords("miss rate", "defective"),
    "false_detection_rate": TargetWords("false-detection rate", "good"),
}


def unsupported_target(metric: TargetMetric, value: float, n: int) -> str | None:
    """Why n validation parts of the target's class cannot support a target rate, or None when they can.

    The rule: a target rate R needs n * R >= 1, at least one expected error among the validation parts. Below
    that the smallest nonzero rate validation can observe (1 / n) is already above R, so the rule can only
    ask for zero errors, and zero errors in n parts does not show a rate of R (its Wilson 95% upper bound is
    about 3.84 / (n + 3.84), far above R). A zero target can never be shown on a finite set."""
    words = WORDS[metric]
    if n == 0:
        return f"the validation split has no {words.parts} images, so its {words.rate} cannot be measured"
    if value * n + COUNT_TOLERANCE >= 1.0:
        return None
    upper = wilson_interval(0, n)[1]
    needed = "no finite number" if value <= 0 else f"at least {math.ceil(1.0 / value - COUNT_TOLERANCE)}"
    return (
        f"the validation split has {n} {words.parts} images: the smallest nonzero {words.rate} it can observe "
        f"is 1/{n} = {100 / n:.2f}%, above the {100 * value:.2f}% asked for, and even 0 of {n} has a Wilson 95% "
        f"upper bound of {100 * upper:.1f}%. A {words.rate} target of {100 * value:.2f}% needs {needed} "
        f"{words.parts} validation images (at least one expected error: n x target >= 1)"
    )


@dataclass(frozen=True)
class CalibrationTarget:
    """What a product's threshold is calibrated to on validation: a miss rate (the highest threshold whose miss
    rate is <= it) or a false-detection budget (the lowest threshold whose false-detection rate is <= it)."""

    metric: TargetMetric
    value: float

    @property
    def key(self) -> str:
        """The config / report key: `target_miss_rate` or `target_false_detection_rate`."""
        return f"target_{self.metric}"

    def describe(self) -> str:
        """'a target miss rate of 2.00%' or 'a false-detection budget of 5.00%'."""
        if self.metric == "miss_rate":
            return f"a target miss rate of {100 * self.value:.2f}%"
        return f"a false-detection budget of {100 * self.value:.2f}%"

    def fields(self) -> dict[str, float | None]:
        """Both keys, the one not set as None (how configs, bundles and reports store a target)."""
        return {f"target_{m}": (self.value if m == self.metric else None) for m in WORDS}

    @classmethod
    def from_fields(
        cls, target_miss_rate: float | None, target_false_detection_rate: float | None = None
    ) -> CalibrationTarget:
        """The target that `fields()` wrote; exactly one of the two must be set."""
        if (target_miss_rate is None) == (target_false_detection_rate is None):
            raise ValueError("set exactly one of target_miss_rate and target_false_detection_rate")
        if target_miss_rate is not None:
            return cls("miss_rate", float(target_miss_rate))
        return cls("false_detection_rate", float(target_false_detection_rate))  # type: ignore[arg-type]
