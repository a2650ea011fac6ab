"""The few-shot benchmark's weight sweep: the fused test AUROC at fixed classifier weights."""

from __future__ import annotations

import numpy as np

from benchmarks.few_shot import SWEEP_WEIGHTS, weight_sweep
from inspection.metrics import auroc
from models.hybrid import Fusion


def test_sweep_spans_both_parts_alone_and_keeps_the_fitted_standardization() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 20)
    distances = np.where(labels == 1, 5.0, 1.0) + rng.normal(0, 0.5, labels.size)  # separates well
    logits = rng.normal(0, 1, labels.size) + 0.5 * labels  # separates poorly
    # Standardization that puts the classifier on a 100x wider scale: the weights alone must not decide.
    fusion = Fusion(0.0, 0.01, 1.0, 0.5, classifier_weight=0.5)
    sweep = weight_sweep(labels, logits, distances, fusion)
    assert list(sweep) == list(SWEEP_WEIGHTS)
    assert sweep[0.0] == round(auroc(labels, distances), 4)
    assert sweep[1.0] == round(auroc(labels, logits), 4)
    assert sweep[0.0] > sweep[0.05] > sweep[1.0]  # at this scale even 5 % of the weak part costs ranking
