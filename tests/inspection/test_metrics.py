"""Metrics: Wilson intervals, AUROC and ROC against scikit-learn, rates at the threshold edge, confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from inspection.metrics import (
    RateEstimate,
    auroc,
    confusion_matrix,
    false_detection_rate,
    miss_rate,
    roc_curve,
    wilson_interval,
)

Z = 1.959963984540054


def hand_wilson(k: int, n: int) -> tuple[float, float]:
    """Textbook Wilson formula, written independently of the implementation."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
        # Newcombe (1998), Stat Med 17:857, Table I, method 3 (score interval without continuity correction).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_published_values(k: int, n: int, expected: tuple[float, float]) -> None:
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)
    assert (low, high) == pytest.approx(hand_wilson(k, n), abs=1e-12)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    # Rounded to one decimal so most scores are tied with others, across both classes.
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_simple_cases() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5


def test_auroc_none_for_one_class() -> None:
    assert auroc([1, 1, 1], [0.1, 0.5, 0.9]) is None
    assert auroc([0, 0], [0.1, 0.5]) is None
    assert auroc([], []) is None


def test_roc_curve_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 2)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thresholds) < 0)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])
    # Trapezoid area under our curve equals the rank-based AUROC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(labels, scores))


def test_roc_curve_undefined_rate_is_nan() -> None:
    fpr, tpr, _ = roc_curve([1, 1], [0.2, 0.7])
    assert np.isnan(fpr).all()
    assert tpr[-1] == 1.0


def test_rates_flag_score_equal_to_threshold() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0])
    scores = np.array([0.2, 0.5, 0.5, 0.9, 0.1, 0.5, 0.6])
    missed = miss_rate(labels, scores, 0.5)
    assert (missed.k, missed.n, missed.rate) == (1, 4, 0.25)  # only 0.2 is below; 0.5 == threshold is caught
    assert missed.ci95 == wilson_interval(1, 4)
    flagged = false_detection_rate(labels, scores, 0.5)
    assert (flagged.k, flagged.n) == (2, 3)  # 0.5 and 0.6 are flagged
    assert flagged.rate == pytest.approx(2 / 3)


def test_rates_without_the_class() -> None:
    assert miss_rate([0, 0], [0.1, 0.9], 0.5) == RateEstimate(rate=None, k=0, n=0, ci95=(0.0, 1.0))
    assert false_detection_rate([1], [0.9], 0.5).rate is None


def test_rates_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        miss_rate([1, 0], [0.1], 0.5)
    with pytest.raises(ValueError, match="0 \\(good\\) or 1"):
        miss_rate([2, 0], [0.1, 0.2], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        auroc([1, 0], [np.nan, 0.2])


def test_confusion_matrix_rows_true_columns_predicted() -> None:
    classes = ["good", "scratch", "spot"]
    true = ["good", "good", "scratch", "spot", "spot", "spot"]
    pred = ["good", "scratch", "scratch", "good", "spot", "spot"]
    matrix = confusion_matrix(true, pred, classes)
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype.kind == "i"
    assert confusion_matrix([], [], classes).sum() == 0


def test_confusion_matrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not one of the classes"):
        confusion_matrix(["good"], ["crack"], ["good", "spot"])
    with pytest.raises(ValueError, match="length"):
        confusion_matrix(["good"], [], ["good"])
    with pytest.raises(ValueError, match="duplicates"):
        confusion_matrix([], [], ["good", "good"])


def test_miss_rate_at_false_detection_reads_one_roc_point() -> None:
    from inspection.metrics import miss_rate_at_false_detection

    labels = [0] * 10 + [1] * 4
    scores = [0.1 * i for i in range(10)] + [0.95, 0.85, 0.5, 0.05]
    # 10% of 10 good parts: one may be flagged (0.9), so the threshold sits just above 0.8: 0.85 and 0.95 caught.
    found = miss_rate_at_false_detection(labels, scores, 0.10)
    assert (found.k, found.n) == (2, 4)
    assert miss_rate_at_false_detection(labels, scores, 0.0).k == 3  # no good part flagged: only 0.95 caught
    assert miss_rate_at_false_detection(labels, scores, 1.0).k == 0  # every part may be flagged
