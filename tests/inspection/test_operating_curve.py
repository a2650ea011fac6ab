"""The trade-off curve and the threshold rules on constructed score sets, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inspection.metrics import false_detection_rate, miss_rate, wilson_interval
from inspection.operating_curve import (
    CalibrationTarget,
    candidate_thresholds,
    curve_points,
    operating_curve,
    threshold_for_false_detection_rate,
    threshold_for_miss_rate,
    unsupported_target,
    wilson_intervals,
)
from training.calibration import calibrate_threshold


def _draw(seed: int, n_good: int, n_defect: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_good, int), np.ones(n_defect, int)]
    scores = np.r_[rng.beta(2, 5, n_good), rng.beta(5, 2, n_defect)]
    return labels, scores if decimals is None else np.round(scores, decimals)


def _brute_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    missed, flagged = miss_rate(labels, scores, threshold), false_detection_rate(labels, scores, threshold)
    return {
        "n_missed": missed.k,
        "n_defect": missed.n,
        "miss_rate": missed.rate,
        "miss_rate_ci95": list(missed.ci95),
        "n_false_detections": flagged.k,
        "n_good": flagged.n,
        "false_detection_rate": flagged.rate,
        "false_detection_rate_ci95": list(flagged.ci95),
    }


def test_vectorized_wilson_matches_the_scalar_one() -> None:
    for n in (0, 1, 7, 40, 1000):
        k = np.arange(n + 1)
        low, high = wilson_intervals(k, n)
        expected = np.array([wilson_interval(int(i), n) for i in k]).reshape(-1, 2)
        np.testing.assert_allclose(np.c_[low, high], expected, atol=1e-15)


def test_every_point_matches_counting_by_hand_with_ties() -> None:
    labels, scores = _draw(3, 60, 40, decimals=1)  # heavy ties across both classes
    thresholds = candidate_thresholds(scores)
    # One threshold per distinct verdict set: the distinct scores plus one.
    assert thresholds.size == np.unique(scores).size + 1
    for point in curve_points(labels, scores, thresholds):
        brute = _brute_point(labels, scores, point["threshold"])
        for key, value in brute.items():
            assert point[key] == pytest.approx(value, abs=1e-6), key


def test_the_curve_is_thinned_but_keeps_its_ends_and_the_served_point() -> None:
    labels, scores = _draw(4, 3000, 600)
    served = float(np.quantile(scores, 0.7)) + 1e-7  # between scores, as a calibrated threshold is
    curve = operating_curve(labels, scores, keep=[served], max_points=150)
    assert 100 <= len(curve) <= 153
    thresholds = [p["threshold"] for p in curve]
    assert thresholds == sorted(thresholds) and served in thresholds
    assert curve[0]["miss_rate"] == 0 and curve[0]["false_detection_rate"] == 1
    assert curve[-1]["miss_rate"] == 1 and curve[-1]["false_detection_rate"] == 0
    misses = [p["miss_rate"] for p in curve]
    assert misses == sorted(misses)
    # Spread along the curve: no gap in (miss, fdr) space is much wider than an even share of its length.
    steps = [
        abs(b["miss_rate"] - a["miss_rate"]) + abs(b["false_detection_rate"] - a["false_detection_rate"])
        for a, b in itertools.pairwise(curve)
    ]
    assert max(steps) < 4 * sum(steps) / len(steps)


def test_a_small_set_keeps_every_point() -> None:
    labels, scores = _draw(5, 30, 20)
    assert len(operating_curve(labels, scores)) == 51


def test_miss_rate_rule_is_calibrations_rule() -> None:
    labels, scores = _draw(6, 200, 150, decimals=2)
    for target in (0.0, 0.02, 0.1, 0.3):
        assert threshold_for_miss_rate(labels, scores, target) == calibrate_threshold(labels, scores, target).threshold


@pytest.mark.parametrize("budget", [0.0, 0.05, 0.2, 0.5, 0.99])
def test_false_detection_rule_is_the_lowest_threshold_within_the_budget(budget: float) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        labels = np.r_[0, rng.integers(0, 2, 30)]
        scores = np.round(rng.random(31), 1)
        threshold = threshold_for_false_detection_rate(labels, scores, budget)
        assert not np.any(scores == threshold)  # between scores, never on one
        ok = [t for t in candidate_thresholds(scores) if false_detection_rate(labels, scores, t).rate <= budget]
        np.testing.assert_array_equal(scores >= threshold, scores >= min(ok))


def test_a_target_needs_one_expected_error_among_the_validation_parts() -> None:
    # The documented example (docs/operating-point.md): a 1% miss target with 20 validation defects.
    problem = unsupported_target("miss_rate", 0.01, 20)
    assert problem is not None
    assert "20 defective" in problem and "1/20 = 5.00%" in problem and "at least 100" in problem
    assert f"{100 * wilson_interval(0, 20)[1]:.1f}%" in problem
    assert unsupported_target("miss_rate", 0.05, 20) is None  # 20 x 5% = one expected miss
    assert unsupported_target("false_detection_rate", 0.01, 99) is not None
    assert unsupported_target("false_detection_rate", 0.01, 100) is None
    assert "no finite number" in (unsupported_target("miss_rate", 0.0, 1000) or "")
    assert "no good images" in (unsupported_target("false_detection_rate", 0.1, 0) or "")


def test_calibration_target_round_trips_its_fields() -> None:
    budget = CalibrationTarget("false_detection_rate", 0.05)
    assert budget.fields() == {"target_miss_rate": None, "target_false_detection_rate": 0.05}
    assert CalibrationTarget.from_fields(**budget.fields()) == budget
    assert budget.key == "target_false_detection_rate" and "budget of 5.00%" in budget.describe()
    with pytest.raises(ValueError, match="exactly one"):
        CalibrationTarget.from_fields(0.02, 0.05)
