"""The ELPV learning curve's arithmetic (tools.experiments.elpv_learning_curve): which runs are its points, the
power-law fit, and the share of the training split a goal would need."""

from __future__ import annotations

import numpy as np
import pytest

from tools.experiments.elpv_learning_curve import FIGURES, power_fit, share_for, training_share


def test_the_curves_points_are_the_share_ablations_and_the_plain_run() -> None:
    assert training_share({"name": "full", "ablation": None}) == 1.0
    assert training_share({"name": "h", "ablation": "training-half"}) == 0.5
    assert training_share({"name": "q", "ablation": "training-quarter"}) == 0.25
    with pytest.raises(ValueError, match="not a point of the learning curve"):
        training_share({"name": "g", "ablation": "gem-pooling"})


def test_a_power_law_is_recovered_and_extrapolated_to_its_goal() -> None:
    shares = np.array([0.25, 0.5, 1.0])
    errors = 0.05 * shares**-0.5  # the distance from perfect falls by 1/sqrt(2) a doubling
    intercept, slope = power_fit(shares, errors)
    assert slope == pytest.approx(-0.5) and 2**intercept == pytest.approx(0.05)
    assert share_for(0.025, intercept, slope) == pytest.approx(4.0)  # half the distance: four times the data
    assert share_for(0.025, intercept, 0.0) is None  # a flat curve never gets there


def test_each_figures_distance_from_perfect_goes_both_ways() -> None:
    auroc, balanced, miss = FIGURES
    assert auroc.distance(0.97) == pytest.approx(0.03) and auroc.distance(auroc.distance(0.97)) == pytest.approx(0.97)
    assert balanced.distance(0.93) == pytest.approx(0.07)
    assert miss.distance(0.1) == 0.1
