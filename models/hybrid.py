"""The hybrid model: a defect classifier and a PatchCore anomaly detector, fused into one calibrated score.

Each score is first put on the same scale: robust z-scores against the good validation parts (median and
IQR-based sigma), so "3" means three good-part spreads above a typical good part for either model. The fused
score is a weighted sum of the two z-scores (weights from training.fusion), and the served probability is
sigmoid(fused - threshold): 0.5 exactly at the threshold calibrated to the target miss rate, as for the anomaly
kind. `forward` keeps the classifier's serving contract, so the same server and parity gate serve it:

- defect_probability (N,): the fused probability;
- type_probabilities (N, K + 1): the classifier's defect types, then "anomaly". When the anomaly term outweighs
  the classifier's term, the part is flagged for something the classifier does not know, and "anomaly" gets the
  mass; otherwise the classifier's type distribution is kept (a smooth gate between the two);
- anomaly_map (N, 1, S, S): PatchCore's distance map (better localized than the classifier's activation map),
  scaled so 0.5 is the distance three good-part spreads above the median good part;
- anomaly_score (N,), classifier_logit (N,): the two inputs of the fusion, for audit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from models.anomaly import PatchCore
from models.classifier import DefectClassifier

HYBRID_KIND = "hybrid"
ANOMALY_TYPE = "anomaly"  # the type an anomaly model (or a hybrid's anomaly term) names; served as such
MAP_HALF_LEVEL_Z = 3.0  # the map's 0.5: a distance three good-part spreads above the median good part
TYPE_GATE_SHARPNESS = 4.0  # per z unit: one z apart is already a 98/2 split between the terms


@dataclass(frozen=True)
class Fusion:
    """How the two scores are standardized and weighted; `threshold` is on the fused z scale."""

    classifier_center: float  # median classifier logit of good validation parts
    classifier_scale: float  # robust spread of those logits
    anomaly_center: float  # median distance of good validation parts
    anomaly_scale: float
    classifier_weight: float  # w in [0, 1]; the anomaly term gets 1 - w
    threshold: float = 0.0

    @property
    def anomaly_weight(self) -> float:
        return 1.0 - self.classifier_weight

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fusion:
        return cls(**{key: float(data[key]) for key in cls.__dataclass_fields__})


class HybridOutput(NamedTuple):
    defect_probability: torch.Tensor
    type_probabilities: torch.Tensor
    anomaly_map: torch.Tensor
    anomaly_score: torch.Tensor
    classifier_logit: torch.Tensor


class HybridModel(nn.Module):
    """Classifier + PatchCore + Fusion, one module so one ONNX graph serves it (see the module docstring)."""

    def __init__(self, classifier: DefectClassifier, patchcore: PatchCore, fusion: Fusion):
        super().__init__()
        if fusion.classifier_scale <= 0 or fusion.anomaly_scale <= 0:
            raise ValueError("fusion scales must be positive")
        self.classifier = classifier
        self.patchcore = patchcore
        self.fusion = fusion

    def terms(self, classifier_logit: torch.Tensor, distance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted z-scores (classifier term, anomaly term); their sum is the fused score."""
        f = self.fusion
        z_classifier = (classifier_logit - f.classifier_center) / f.classifier_scale
        z_anomaly = (distance - f.anomaly_center) / f.anomaly_scale
        return f.classifier_weight * z_classifier, f.anomaly_weight * z_anomaly

    def forward(self, images: torch.Tensor) -> HybridOutput:
        # The logit, not the probability: a float32 sigmoid saturates at 1.0 and would cap the classifier's z.
        classified, classifier_logit = self.classifier.outputs_and_logit(images)
        distance, distance_map = self.patchcore(images)
        classifier_term, anomaly_term = self.terms(classifier_logit, distance)
        probability = torch.sigmoid(classifier_term + anomaly_term - self.fusion.threshold)
        # A soft gate, not a hard comparison: a near tie cannot flip the type between ONNX Runtime and PyTorch.
        known = torch.sigmoid(TYPE_GATE_SHARPNESS * (classifier_term - anomaly_term)).unsqueeze(1)
        types = torch.cat([classified.type_probabilities * known, 1.0 - known], dim=1)
        map_scale = 2.0 * (self.fusion.anomaly_center + MAP_HALF_LEVEL_Z * self.fusion.anomaly_scale)
        anomaly_map = (distance_map / map_scale).clamp(0.0, 1.0)
        return HybridOutput(probability, types, anomaly_map, distance, classifier_logit)
