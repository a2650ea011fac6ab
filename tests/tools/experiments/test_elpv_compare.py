"""tools.experiments.elpv_compare: the paired interval of an AUROC gain between two runs on the same cells."""

from __future__ import annotations

import numpy as np

from tools.experiments.elpv_compare import auroc_gain


def test_same_scores_gain_nothing_and_a_clearly_better_run_clears_zero() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 150 + [1] * 50)
    weak = labels * 0.5 + rng.normal(0, 0.5, labels.size)
    strong = labels * 3.0 + rng.normal(0, 0.5, labels.size)
    assert auroc_gain(labels, weak, weak) == {"gain": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}
    better = auroc_gain(labels, weak, strong)
    assert better["gain"] > 0.2
    assert 0.0 < better["ci95_low"] < better["gain"] < better["ci95_high"]


def test_a_rerun_that_reorders_cells_a_little_is_not_told_apart_from_noise() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([0] * 150 + [1] * 50)
    scores = labels * 1.0 + rng.normal(0, 0.6, labels.size)
    rerun = scores + rng.normal(0, 0.1, labels.size)  # what a reseed does: every cell moves a little
    gain = auroc_gain(labels, scores, rerun)
    assert gain["ci95_low"] < 0.0 < gain["ci95_high"]
