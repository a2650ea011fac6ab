"""A trained model on disk: weights plus everything needed to rebuild and preprocess for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inspection.atomic import atomic_target
from inspection.errors import InspectionError
from inspection.operating_curve import CalibrationTarget
from inspection.preprocessing import PreprocessSpec
from models.anomaly import PatchCore
from models.backbone import DEFAULT_BACKBONE
from models.classifier import DefectClassifier
from models.hybrid import ANOMALY_TYPE, HYBRID_KIND, Fusion, HybridModel

CLASSIFIER_KIND = "classifier"


@dataclass
class ModelBundle:
    """The classifier with its preprocessing, class names and calibrated threshold."""

    model: DefectClassifier
    spec: PreprocessSpec
    defect_types: list[str]
    threshold: float
    target_miss_rate: float | None  # None when the product's target is a false-detection budget
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = CLASSIFIER_KIND
    target_false_detection_rate: float | None = None

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "kind": self.kind,
            "state_dict": self.model.state_dict(),
            "trainable_stages": self.model.trainable_stages,
            **classifier_architecture(self.model),
            "spec": self.spec.to_dict(),
            "defect_types": self.defect_types,
            "threshold": self.threshold,
            "target_miss_rate": self.target_miss_rate,
            "target_false_detection_rate": self.target_false_detection_rate,
            "info": self.info,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ModelBundle:
        return cls(
            model=classifier_from_state(
                len(state["defect_types"]), state["trainable_stages"], state["state_dict"], **architecture_of(state)
            ),
            spec=PreprocessSpec.from_dict(state["spec"]),
            defect_types=list(state["defect_types"]),
            threshold=float(state["threshold"]),
            target_miss_rate=saved_target(state).fields()["target_miss_rate"],
            target_false_detection_rate=saved_target(state).fields()["target_false_detection_rate"],
            info=dict(state["info"]),
        )


ANOMALY_KIND = "anomaly"


@dataclass
class AnomalyBundle:
    """PatchCore with its preprocessing and calibrated threshold, in distance units (score >= threshold: defect).

    `score_scale` is the spread of good validation scores that maps a distance to the served probability.
    """

    model: PatchCore
    spec: PreprocessSpec
    threshold: float
    score_scale: float
    target_miss_rate: float | None
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = ANOMALY_KIND
    target_false_detection_rate: float | None = None

    @property
    def defect_types(self) -> list[str]:
        return [ANOMALY_TYPE]

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "kind": self.kind,
            "state_dict": self.model.state_dict(),
            "patchcore": self.model.config(),
            "spec": self.spec.to_dict(),
            "threshold": self.threshold,
            "score_scale": self.score_scale,
            "target_miss_rate": self.target_miss_rate,
            "target_false_detection_rate": self.target_false_detection_rate,
            "info": self.info,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnomalyBundle:
        return cls(
            model=patchcore_from_state(state["patchcore"], state["state_dict"]),
            spec=PreprocessSpec.from_dict(state["spec"]),
            threshold=float(state["threshold"]),
            score_scale=float(state["score_scale"]),
            target_miss_rate=saved_target(state).fields()["target_miss_rate"],
            target_false_detection_rate=saved_target(state).fields()["target_false_detection_rate"],
            info=dict(state["info"]),
        )


HYBRID_SERVED_THRESHOLD = 0.5  # the hybrid serves sigmoid(fused - calibrated threshold): 0.5 at the threshold


@dataclass
class HybridBundle:
    """Classifier + PatchCore + their fusion; `classifier_types` are the classifier's defect types (the served
    types add "anomaly"), and the calibrated threshold lives in the fusion, on the fused z scale."""

    model: HybridModel
    spec: PreprocessSpec
    classifier_types: list[str]
    target_miss_rate: float | None
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = HYBRID_KIND
    target_false_detection_rate: float | None = None

    @property
    def defect_types(self) -> list[str]:
        return [*self.classifier_types, ANOMALY_TYPE]

    @property
    def threshold(self) -> float:
        return HYBRID_SERVED_THRESHOLD

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "kind": self.kind,
            "classifier_state_dict": self.model.classifier.state_dict(),
            "trainable_stages": self.model.classifier.trainable_stages,
            **classifier_architecture(self.model.classifier),
            "classifier_types": self.classifier_types,
            "patchcore_state_dict": self.model.patchcore.state_dict(),
            "patchcore": self.model.patchcore.config(),
            "fusion": self.model.fusion.to_dict(),
            "spec": self.spec.to_dict(),
            "target_miss_rate": self.target_miss_rate,
            "target_false_detection_rate": self.target_false_detection_rate,
            "info": self.info,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HybridBundle:
        types = list(state["classifier_types"])
        model = HybridModel(
            classifier_from_state(
                len(types), state["trainable_stages"], state["classifier_state_dict"], **architecture_of(state)
            ),
            patchcore_from_state(state["patchcore"], state["patchcore_state_dict"]),
            Fusion.from_dict(state["fusion"]),
        )
        return cls(
            model=model.eval(),
            spec=PreprocessSpec.from_dict(state["spec"]),
            classifier_types=types,
            target_miss_rate=saved_target(state).fields()["target_miss_rate"],
            target_false_detection_rate=saved_target(state).fields()["target_false_detection_rate"],
            info=dict(state["info"]),
        )


AnyBundle = ModelBundle | AnomalyBundle | HybridBundle


def saved_target(state: dict[str, Any]) -> CalibrationTarget:
    """A saved bundle's calibration target (bundles saved before false-detection budgets carry a miss rate)."""
    budget = state.get("target_false_detection_rate")
    miss = state.get("target_miss_rate")
    return CalibrationTarget.from_fields(
        None if miss is None else float(miss), None if budget is None else float(budget)
    )


def bundle_target(bundle: AnyBundle) -> CalibrationTarget:
    """What a bundle's threshold was calibrated to."""
    return CalibrationTarget.from_fields(bundle.target_miss_rate, bundle.target_false_detection_rate)


def save_bundle(bundle: AnyBundle, path: Path) -> Path:
    """Write the bundle atomically (temp file + rename) so a crash never leaves a truncated model."""
    with atomic_target(path) as tmp:
        torch.save(bundle.state(), tmp)
    return path


def read_state(path: Path) -> dict[str, Any]:
    """A saved bundle's raw state; its `kind` says which kind rebuilds it (none: a classifier, the first kind)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "spec" not in state:
        raise InspectionError(f"{path} is not a saved inspection model")
    state.setdefault("kind", CLASSIFIER_KIND)
    return state


def patchcore_from_state(config: dict[str, Any], state_dict: dict[str, Any]) -> PatchCore:
    """A fitted PatchCore rebuilt from its config and weights (no pretrained download: the file has them)."""
    model = PatchCore(
        layers=config["layers"],
        feature_dim=config["feature_dim"],
        memory_bank_size=config["memory_bank_size"],
        blur_sigma=config["blur_sigma"],
        pretrained=False,
        seed=config["seed"],
    )
    model.load_state_dict(state_dict)
    return model.eval()


def classifier_architecture(model: DefectClassifier) -> dict[str, Any]:
    """What rebuilding a classifier needs besides its weights and stages: the backbone, the test-time flips and the
    floor of its drawn map."""
    return {"backbone": model.backbone_name, "tta_flips": list(model.tta_flips), "map_floor": model.map_floor}


def architecture_of(state: dict[str, Any]) -> dict[str, Any]:
    """A saved state's classifier architecture; files saved before these options were Lite0 without flips, whose
    maps were each divided by their own peak (a floor of 0)."""
    return {
        "backbone": state.get("backbone", DEFAULT_BACKBONE),
        "tta_flips": tuple(state.get("tta_flips", ())),
        "map_floor": float(state.get("map_floor", 0.0)),
    }


def classifier_from_state(
    n_types: int,
    trainable_stages: int,
    state_dict: dict[str, Any],
    backbone: str = DEFAULT_BACKBONE,
    tta_flips: Sequence[str] = (),
    map_floor: float = 0.0,
) -> DefectClassifier:
    """A trained classifier rebuilt from its weights (no pretrained download: the file has them)."""
    model = DefectClassifier(
        n_types, trainable_stages=trainable_stages, pretrained=False, backbone=backbone, tta_flips=tta_flips
    )
    model.load_state_dict(state_dict)
    model.map_floor = map_floor
    return model.eval()
