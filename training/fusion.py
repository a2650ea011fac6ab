"""Fitting the hybrid's fusion on the validation split: standardize each score on good parts, weight by evidence.

Good parts are plentiful, defects are not (that is why a product is hybrid), so each model's score is put on a
common scale using good validation parts alone: robust z-scores (median, IQR / 1.349). The weights then need
only a little defect evidence: on that scale, the median z of the defective validation parts is each model's
separation (d'), and for two independent scores with unit spread on good parts the best linear combination
weights each by its separation (Fisher's discriminant). With few defects that estimate is noisy, so it is shrunk
toward equal weights by PRIOR_DEFECTS pseudo-observations; without defects the weights are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspection.metrics import robust_spread
from models.hybrid import Fusion

PRIOR_DEFECTS = 5.0  # pseudo-defects at equal weights: five real ones halve the pull toward 0.5
MIN_SPREAD = 1e-3


@dataclass(frozen=True)
class FusionFit:
    """The fitted fusion and the evidence behind its weight."""

    fusion: Fusion
    classifier_separation: float | None  # median z of defective validation parts, None without defects
    anomaly_separation: float | None
    n_defect: int


def robust_center_scale(values: np.ndarray) -> tuple[float, float]:
    """(median, IQR / 1.349), the spread falling back to the std and then to a floor when the IQR is ~0."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("fusion needs good validation parts to standardize the scores on")
    return float(np.median(values)), robust_spread(values, MIN_SPREAD)


def fit_fusion(classifier_logit: np.ndarray, anomaly_distance: np.ndarray, is_defect: np.ndarray) -> FusionFit:
    """Standardize both scores on the good validation parts and weight them by their shrunk separation."""
    labels = np.asarray(is_defect, dtype=bool)
    logits = np.asarray(classifier_logit, dtype=np.float64)
    distance = np.asarray(anomaly_distance, dtype=np.float64)
    c_center, c_scale = robust_center_scale(logits[~labels])
    a_center, a_scale = robust_center_scale(distance[~labels])
    n_defect = int(labels.sum())
    c_sep = a_sep = None
    weight = 0.5
    if n_defect:
        # Clipped at 0: a model that scores defects below typical good parts carries no usable evidence.
        c_sep = max(float(np.median((logits[labels] - c_center) / c_scale)), 0.0)
        a_sep = max(float(np.median((distance[labels] - a_center) / a_scale)), 0.0)
        observed = c_sep / (c_sep + a_sep) if c_sep + a_sep > 0 else 0.5
        weight = (n_defect * observed + PRIOR_DEFECTS * 0.5) / (n_defect + PRIOR_DEFECTS)
    fusion = Fusion(c_center, c_scale, a_center, a_scale, classifier_weight=weight)
    return FusionFit(fusion, c_sep, a_sep, n_defect)


def fused_scores(fusion: Fusion, classifier_logit: np.ndarray, anomaly_distance: np.ndarray) -> np.ndarray:
    """The fused z-score (before the threshold), as HybridModel computes it; what calibration sees."""
    z_classifier = (np.asarray(classifier_logit, dtype=np.float64) - fusion.classifier_center) / fusion.classifier_scale
    z_anomaly = (np.asarray(anomaly_distance, dtype=np.float64) - fusion.anomaly_center) / fusion.anomaly_scale
    return fusion.classifier_weight * z_classifier + fusion.anomaly_weight * z_anomaly
