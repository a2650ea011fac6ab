"""The hybrid's fusion: good-part standardization and evidence-weighted, shrunk weights."""

from __future__ import annotations

import numpy as np
import pytest

from training.fusion import PRIOR_DEFECTS, fit_fusion, fused_scores, robust_center_scale


def test_robust_scale_ignores_one_far_off_good_part() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 2000)
    center, scale = robust_center_scale(np.r_[values, 1e6])
    assert center == pytest.approx(3.0, abs=0.2)
    assert scale == pytest.approx(2.0, rel=0.1)
    assert robust_center_scale(np.ones(10))[1] > 0  # constant scores still give a usable, positive spread


def test_the_model_that_separates_defects_better_gets_more_weight() -> None:
    rng = np.random.default_rng(1)
    n_good, n_defect = 300, 40
    labels = np.r_[np.zeros(n_good), np.ones(n_defect)].astype(bool)
    classifier = np.r_[rng.normal(0, 1, n_good), rng.normal(1.0, 1, n_defect)]  # weak
    anomaly = np.r_[rng.normal(10, 2, n_good), rng.normal(22, 2, n_defect)]  # strong: +6 spreads
    fit = fit_fusion(classifier, anomaly, labels)
    assert fit.fusion.classifier_weight < 0.3
    assert fit.anomaly_separation > fit.classifier_separation
    # The fused score ranks at least as well as the better input on these data.
    fused = fused_scores(fit.fusion, classifier, anomaly)
    assert fused[labels].min() > np.median(fused[~labels])


def test_few_defects_are_shrunk_toward_equal_weights_and_none_give_equal_weights() -> None:
    rng = np.random.default_rng(2)
    good_c, good_a = rng.normal(0, 1, 200), rng.normal(0, 1, 200)
    no_defects = fit_fusion(good_c, good_a, np.zeros(200, bool))
    assert no_defects.fusion.classifier_weight == 0.5 and no_defects.classifier_separation is None
    one = fit_fusion(np.r_[good_c, 0.0], np.r_[good_a, 8.0], np.r_[np.zeros(200), 1].astype(bool))
    # Observed weight 0 (the classifier did not separate it), pulled toward 0.5 by PRIOR_DEFECTS pseudo-defects.
    assert one.fusion.classifier_weight == pytest.approx(PRIOR_DEFECTS * 0.5 / (1 + PRIOR_DEFECTS), abs=0.02)


def test_fused_scores_are_the_weighted_z_scores() -> None:
    fit = fit_fusion(np.array([0.0, 1.0, 2.0, 9.0]), np.array([5.0, 6.0, 7.0, 9.0]), np.array([0, 0, 0, 1], bool))
    f = fit.fusion
    expected = (
        f.classifier_weight * (9.0 - f.classifier_center) / f.classifier_scale
        + f.anomaly_weight * (9.0 - f.anomaly_center) / f.anomaly_scale
    )
    assert fused_scores(f, np.array([9.0]), np.array([9.0]))[0] == pytest.approx(expected)
