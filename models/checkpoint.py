"""A trained model on disk: weights plus everything needed to rebuild and preprocess for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inspection.atomic import atomic_target
from inspection.preprocessing import PreprocessSpec
from models.classifier import DefectClassifier

MODEL_FILE = "model.pt"  # the bundle's name inside a registered version's artifact folder


@dataclass
class ModelBundle:
    """The classifier with its preprocessing, class names and calibrated threshold."""

    model: DefectClassifier
    spec: PreprocessSpec
    defect_types: list[str]
    threshold: float
    target_miss_rate: float
    info: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "state_dict": self.model.state_dict(),
            "trainable_stages": self.model.trainable_stages,
            "spec": self.spec.to_dict(),
            "defect_types": self.defect_types,
            "threshold": self.threshold,
            "target_miss_rate": self.target_miss_rate,
            "info": self.info,
        }


def save_bundle(bundle: ModelBundle, path: Path) -> Path:
    """Write the bundle atomically (temp file + rename) so a crash never leaves a truncated model."""
    with atomic_target(path) as tmp:
        torch.save(bundle.state(), tmp)
    return path


def load_bundle(path: Path) -> ModelBundle:
    """Rebuild a saved bundle (no pretrained download needed: the weights come from the file)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = DefectClassifier(len(state["defect_types"]), trainable_stages=state["trainable_stages"], pretrained=False)
    model.load_state_dict(state["state_dict"])
    model.eval()
    return ModelBundle(
        model=model,
        spec=PreprocessSpec.from_dict(state["spec"]),
        defect_types=list(state["defect_types"]),
        threshold=float(state["threshold"]),
        target_miss_rate=float(state["target_miss_rate"]),
        info=dict(state["info"]),
    )
