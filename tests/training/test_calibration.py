"""Threshold calibration on constructed score sets, and the evaluation plots it feeds."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from inspection.metrics import confusion_matrix, false_detection_rate, miss_rate, wilson_interval
from training.calibration import calibrate_threshold
from training.plots import plot_confusion_matrix, plot_roc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def draw(rng: np.random.Generator, n_good: int, n_defect: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping score distributions: good ~ Beta(2, 5), defective ~ Beta(5, 2)."""
    labels = np.r_[np.zeros(n_good, int), np.ones(n_defect, int)]
    scores = np.r_[rng.beta(2, 5, n_good), rng.beta(5, 2, n_defect)]
    return labels, scores


def test_meets_target_with_the_highest_threshold() -> None:
    labels, scores = draw(np.random.default_rng(0), 1000, 1000)
    cal = calibrate_threshold(labels, scores, target_miss_rate=0.02)
    assert cal.method == "miss_rate"
    assert (cal.n_good, cal.n_defect) == (1000, 1000)
    assert cal.val_miss_rate is not None and cal.val_miss_rate <= 0.02
    assert cal.val_miss_rate == miss_rate(labels, scores, cal.threshold).rate
    assert cal.val_false_detection_rate == false_detection_rate(labels, scores, cal.threshold).rate
    # Between two distinct scores, never on one, so tiny numeric noise cannot flip a counted verdict.
    assert not np.any(scores == cal.threshold)
    next_above = scores[scores > cal.threshold].min()
    next_below = scores[scores < cal.threshold].max()
    assert cal.threshold == pytest.approx((next_above + next_below) / 2)
    # Highest: moving past the next score up misses one defect too many.
    raised = miss_rate(labels, scores, float(np.nextafter(next_above, np.inf)))
    assert raised.rate is not None and raised.rate > 0.02
    assert "miss rate" in cal.note


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2, 0.5])
def test_agrees_with_brute_force_on_tied_scores(target: float) -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        labels = np.r_[1, rng.integers(0, 2, 30)]
        scores = np.round(rng.random(31), 1)  # heavy ties, across both classes
        cal = calibrate_threshold(labels, scores, target_miss_rate=target)
        ok = [v for v in np.unique(scores) if miss_rate(labels, scores, v).rate <= target]  # type: ignore[operator]
        np.testing.assert_array_equal(scores >= cal.threshold, scores >= max(ok))


def test_held_out_miss_rate_is_close_to_target() -> None:
    # Fixed seed: the interval covers the held-out draw's noise only, not calibration noise, so a
    # different seed can legitimately land just outside it (about 1 in 8).
    rng = np.random.default_rng(1)
    cal = calibrate_threshold(*draw(rng, 1000, 1000), target_miss_rate=0.02)
    labels, scores = draw(rng, 1000, 1000)
    held_out = miss_rate(labels, scores, cal.threshold)
    low, high = wilson_interval(held_out.k, held_out.n)
    assert low <= 0.02 <= high


def test_target_zero_catches_every_defect() -> None:
    labels, scores = draw(np.random.default_rng(2), 300, 100)
    cal = calibrate_threshold(labels, scores, target_miss_rate=0.0)
    assert cal.val_miss_rate == 0.0
    assert cal.threshold < scores[labels == 1].min()
    # Ties at the lowest defect score are all caught, and the threshold is still not on a score.
    tied = np.r_[scores, scores[labels == 1].min()]
    tied_cal = calibrate_threshold(np.r_[labels, 1], tied, target_miss_rate=0.0)
    assert tied_cal.val_miss_rate == 0.0 and not np.any(tied == tied_cal.threshold)


def test_small_targets_that_allow_no_miss_catch_all() -> None:
    cal = calibrate_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9], target_miss_rate=0.2)
    assert cal.val_miss_rate == 0.0  # 0.2 * 3 defects = 0.6 allowed misses, i.e. none
    assert cal.threshold == pytest.approx(0.25)  # midway between 0.4 (must catch) and 0.1


def test_tolerates_float_rounding_of_the_budget() -> None:
    labels = np.r_[np.zeros(10, int), np.ones(100, int)]
    scores = np.r_[np.full(10, 0.01), np.linspace(0.1, 1.0, 100)]
    cal = calibrate_threshold(labels, scores, target_miss_rate=0.07)  # 0.07 * 100 = 7.000000000000001
    assert cal.val_miss_rate == pytest.approx(0.07)


def test_lowest_score_is_a_defect() -> None:
    cal = calibrate_threshold([1, 0, 1], [0.2, 0.5, 0.9], target_miss_rate=0.0)
    assert 0.0 < cal.threshold < 0.2
    assert cal.val_false_detection_rate == 1.0


def test_no_defects_falls_back_to_good_quantile() -> None:
    scores = np.random.default_rng(3).beta(2, 5, 1000)
    cal = calibrate_threshold(np.zeros(1000, int), scores)
    assert cal.method == "good_quantile"
    assert cal.val_miss_rate is None
    assert cal.n_defect == 0
    assert cal.note == (
        "validation split has no defective images; threshold set at the 99th percentile of good scores, "
        "miss rate unknown"
    )
    assert np.quantile(scores, 0.99) < cal.threshold < np.sort(scores)[-10] + 1e-12
    assert cal.val_false_detection_rate == pytest.approx(0.01)
    assert not np.any(scores == cal.threshold)


def test_no_defects_top_score_is_clipped_to_one() -> None:
    cal = calibrate_threshold([0, 0], [0.2, 0.6], good_quantile=1.0)
    assert cal.threshold == pytest.approx(0.8)
    assert calibrate_threshold([0, 0], [0.2, 1.0], good_quantile=1.0).threshold <= 1.0


def test_no_good_images_is_noted() -> None:
    cal = calibrate_threshold([1, 1, 1], [0.3, 0.6, 0.9], target_miss_rate=0.0)
    assert cal.val_false_detection_rate is None
    assert "no good images" in cal.note


@pytest.mark.parametrize(
    ("labels", "scores", "target", "message"),
    [
        ([], [], 0.02, "empty"),
        ([0, 1], [0.5], 0.02, "length"),
        ([0, 1], [0.5, np.nan], 0.02, "NaN"),
        ([0, 1], [0.1, 0.5], 1.0, "target_miss_rate"),
        ([0, 1], [0.1, 0.5], -0.1, "target_miss_rate"),
        ([0, 3], [0.1, 0.5], 0.02, "0 \\(good\\) or 1"),
    ],
)
def test_rejects_bad_input(labels: list[int], scores: list[float], target: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate_threshold(np.array(labels), np.array(scores), target_miss_rate=target)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 5_000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    # No temp file left next to it.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    labels, scores = draw(np.random.default_rng(4), 200, 200)
    cal = calibrate_threshold(labels, scores)
    out = plot_roc(labels, scores, cal.threshold, tmp_path / "roc" / "roc.png", title="synthetic: test ROC")
    assert out == tmp_path / "roc" / "roc.png"
    assert_png(out)


def test_plot_roc_single_class(tmp_path: Path) -> None:
    assert_png(plot_roc([0, 0, 0], [0.1, 0.2, 0.3], 0.25, tmp_path / "roc.png", title="good only"))


def test_plot_confusion_matrix_writes_png(tmp_path: Path) -> None:
    classes = ["good", "scratch", "spot", "crack"]
    true = ["good"] * 50 + ["scratch"] * 10 + ["spot"] * 5
    pred = ["good"] * 47 + ["spot"] * 3 + ["scratch"] * 9 + ["good"] + ["spot"] * 5
    matrix = confusion_matrix(true, pred, classes)
    assert_png(plot_confusion_matrix(matrix, classes, tmp_path / "cm.png", title="confusion"))
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion_matrix(matrix, classes[:2], tmp_path / "bad.png", title="bad")


def test_max_accuracy_threshold_matches_brute_force() -> None:
    from training.calibration import max_accuracy_threshold

    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1), 2)  # rounded: many ties
    threshold = max_accuracy_threshold(labels, scores)
    accuracy = ((scores >= threshold) == labels).mean()
    brute = max(((scores >= t) == labels).mean() for t in np.unique(scores))
    assert accuracy == pytest.approx(brute)
    assert threshold not in set(scores.tolist())  # placed between scores, like the miss-rate threshold


def test_false_detection_budget_gives_the_fewest_misses_within_it() -> None:
    from inspection.operating_curve import CalibrationTarget
    from training.calibration import calibrate_false_detection, calibrate_to_target

    labels, scores = draw(np.random.default_rng(8), 400, 300)
    cal = calibrate_false_detection(labels, scores, 0.05)
    assert cal.method == "false_detection_rate" and cal.target_miss_rate is None
    assert cal.target_false_detection_rate == 0.05
    assert cal.val_false_detection_rate is not None and cal.val_false_detection_rate <= 0.05
    assert cal.val_false_detection_rate == false_detection_rate(labels, scores, cal.threshold).rate
    # Lowest: the next score down flags one good part too many.
    lowered = false_detection_rate(labels, scores, float(scores[scores < cal.threshold].max()))
    assert lowered.rate is not None and lowered.rate > 0.05
    assert "false-detection rate <= 0.05" in cal.note
    assert calibrate_to_target(labels, scores, CalibrationTarget("false_detection_rate", 0.05)) == cal
    assert calibrate_to_target(labels, scores, CalibrationTarget("miss_rate", 0.02)) == calibrate_threshold(
        labels, scores, 0.02
    )


def test_false_detection_budget_without_good_images_falls_back_to_the_miss_rate() -> None:
    from training.calibration import calibrate_false_detection

    cal = calibrate_false_detection([1, 1, 1, 1], [0.2, 0.4, 0.6, 0.8], 0.05)
    assert cal.method == "miss_rate" and "no good images" in cal.note
    assert cal.target_false_detection_rate == 0.05
