"""Typed per-product configuration: configs/default.yaml overlaid by configs/products/<product>.yaml.

Unknown keys are rejected (a typo must not silently fall back to a default), and the resolved config is saved
with every training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inspection.audit import AuditPolicy
from inspection.errors import ConfigError
from inspection.names import validate_product_name
from inspection.operating_curve import CalibrationTarget

DEFAULT_TARGET_MISS_RATE = 0.02  # when a config sets neither target
TARGET_KEYS = ("target_miss_rate", "target_false_detection_rate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AugmentConfig(_Strict):
    """Augmentations suited to inspection; geometric ones only where the part looks the same transformed."""

    hflip: bool = False
    vflip: bool = False
    rotate90: bool = False
    max_rotate_degrees: float = Field(default=0.0, ge=0, le=45)
    brightness_contrast: float = Field(default=0.15, ge=0, le=1, description="max relative change")
    blur_probability: float = Field(default=0.15, ge=0, le=1)
    noise_probability: float = Field(default=0.15, ge=0, le=1)


class TrainConfig(_Strict):
    """Schedule: trunk features cached for a few augmented views, then the upper blocks fine-tuned."""

    epochs: int = Field(default=10, ge=0, le=500, description="fine-tune epochs after the probe")
    probe_steps: int = Field(default=300, ge=1, description="full-batch steps fitting the heads before fine-tuning")
    probe_learning_rate: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    backbone_learning_rate: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    augmented_views: int = Field(default=3, ge=1, le=32, description="augmented copies of each training image")
    trainable_stages: int = Field(default=3, ge=0, le=7, description="upper backbone stages fine-tuned")
    patience: int = Field(default=4, ge=1, description="epochs without validation improvement before stopping")
    dropout: float = Field(default=0.2, ge=0, lt=1)
    defect_type_loss_weight: float = Field(default=0.5, ge=0)
    # A running average of the fine-tune's weights (e.g. 0.98: about the last 50 steps, one ELPV epoch) is what
    # validation judges and the model keeps; None keeps the raw weights of the best epoch.
    weight_average_decay: float | None = Field(
        default=None, gt=0, lt=1, description="decay of the fine-tuned weights' moving average"
    )
    # Expert labels are sometimes votes: ELPV keeps each cell's share of "defective" votes (0, 1/3, 2/3, 1) as
    # `defect_probability` in its metadata. Naming that key trains the defect head on the vote share instead of
    # the 0/1 folder label; validation, calibration and the report keep the folder labels.
    soft_label_key: str | None = Field(
        default=None, min_length=1, description="metadata key of a per-image defect probability trained on"
    )


class SplitConfig(_Strict):
    """Deterministic stratified split fractions; the test split is frozen once written."""

    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    # QA-reviewed line frames never enter test or validation: this share of them (drawn by a hash of the frame's
    # group) forms the `recent` evaluation slice, the rest is trained on.
    recent_fraction: float = Field(default=0.3, ge=0, le=1, description="share of reviewed frames kept out of training")
    seed: int = 0


class AnomalyConfig(_Strict):
    """PatchCore (kind: anomaly): which backbone stages feed the patch features and how big the memory bank gets.

    Defaults mirror models.anomaly (inspection/ may not import models/); the bank bound keeps memory and scoring
    time flat however many good images are imported.
    """

    layers: tuple[int, ...] = Field(default=(2, 4), min_length=1, description="Lite0 stage indices in [0, 6]")
    feature_dim: int = Field(default=128, ge=8, le=1024, description="random projection size of patch features")
    memory_bank_size: int = Field(default=2000, ge=1, description="coreset rows kept: the memory bound")
    blur_sigma: float = Field(default=4.0, ge=0, description="Gaussian blur of the anomaly map, in pixels")
    max_patches: int = Field(default=50_000, ge=1, description="random sample of patches the coreset is taken from")
    batch_size: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> AnomalyConfig:
        if any(not 0 <= layer <= 6 for layer in self.layers):
            raise ValueError(f"layers must be Lite0 stage indices in [0, 6], got {self.layers}")
        if self.max_patches < self.memory_bank_size:
            raise ValueError("max_patches must be at least memory_bank_size (the coreset is taken from them)")
        return self


class RetentionConfig(_Strict):
    """How many days a product's rows and archived frames are kept, by what they are; None keeps them forever.

    A row counts as audited when it was drawn into the audit sample or QA labelled it; a row of several classes is
    kept for the longest of their periods. An audit-selected row QA has not labelled yet is kept until it is
    labelled or `unreviewed_audit_days` have passed (the audit's deadline), whichever comes first. Rollups, and
    so every statistic, are never pruned.
    """

    pass_days: int | None = Field(default=None, ge=1)
    defect_days: int | None = Field(default=None, ge=1)
    audited_days: int | None = Field(default=None, ge=1)
    unreviewed_audit_days: int = Field(default=90, ge=1)

    @model_validator(mode="after")
    def _longer_for_evidence(self) -> RetentionConfig:
        # Defects and audited frames are the evidence behind the rates: never kept shorter than plain passes.
        for name in ("defect_days", "audited_days"):
            days = getattr(self, name)
            if self.pass_days is not None and days is not None and days < self.pass_days:
                raise ValueError(f"{name} ({days}) must be at least pass_days ({self.pass_days})")
            if self.pass_days is None and days is not None:
                raise ValueError(f"{name} is set but pass_days is not: passes would outlive defects")
        return self


class RoiConfig(_Strict):
    """The part's box in native frame pixels; pixels outside it are never scored."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(ge=32)
    height: int = Field(ge=32)


class TilingConfig(_Strict):
    """Square tiles cut at native resolution over the ROI (or the frame), each resized to the model input."""

    tile: int = Field(ge=32, le=8192, description="tile side in native pixels")
    overlap: int = Field(default=0, ge=0, description="native pixels shared by neighbouring tiles")

    @model_validator(mode="after")
    def _check_overlap(self) -> TilingConfig:
        if self.overlap >= self.tile:
            raise ValueError(f"tiling.overlap ({self.overlap}) must be smaller than tiling.tile ({self.tile})")
        return self


class ProductConfig(_Strict):
    """How one product is trained and judged."""

    # classifier: supervised (needs defect images); anomaly: PatchCore on good images only (also chosen
    # automatically when the dataset has no defect images); hybrid: both, fused (few defects); auto: hybrid when the
    # training split holds fewer than training.pipeline.AUTO_HYBRID_BELOW_DEFECTS defects, else classifier.
    kind: Literal["classifier", "anomaly", "hybrid", "auto"] = "classifier"
    # "auto": the median native size of the product's images, capped and rounded (training.data.resolve_image_size);
    # the resolved config saved with each run holds the number it became.
    image_size: int | Literal["auto"] = Field(default=224)
    backbone: Literal["lite0", "lite1", "lite2"] = "lite0"  # the classifier's pretrained EfficientNet-Lite
    # Average the classifier's outputs over the flips `augment` allows (hflip / vflip), inside the exported graph.
    test_time_flips: bool = False
    color_mode: Literal["auto", "gray", "color"] = "auto"
    # The calibration target, exactly one of the two: the highest threshold whose validation miss rate is <= the
    # target miss rate, or the lowest whose validation false-detection rate is <= the budget. Neither: 2% misses.
    target_miss_rate: float | None = Field(default=None, ge=0, lt=1)
    target_false_detection_rate: float | None = Field(default=None, ge=0, lt=1)
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    # The audit sample's rates when QA has not set any (inspection.audit): what share of passes and of defect
    # verdicts the server draws for QA, from which the live miss and false-detection rates are estimated.
    audit: AuditPolicy = AuditPolicy()
    retention: RetentionConfig = RetentionConfig()
    # Large frames with small defects: the part's box (native px) and tiles over it (inspection.tiling). "auto"
    # sizes tiles from the masks' defect sizes; the resolved config saved with each run holds the numbers.
    roi: RoiConfig | None = None
    tiling: TilingConfig | Literal["auto"] | None = None

    @model_validator(mode="after")
    def _check_image_size(self) -> ProductConfig:
        if isinstance(self.image_size, int) and not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be 'auto' or in [32, 1024], got {self.image_size}")
        roi, tiling = self.roi, self.tiling
        if isinstance(tiling, TilingConfig) and roi is not None and tiling.tile > min(roi.width, roi.height):
            raise ValueError(f"tiling.tile ({tiling.tile}) is larger than the ROI ({roi.width}x{roi.height})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _one_target(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        miss, budget = data.get("target_miss_rate"), data.get("target_false_detection_rate")
        if miss is not None and budget is not None:
            raise ValueError(
                "set exactly one of target_miss_rate and target_false_detection_rate (the threshold is calibrated "
                "to one of them), not both"
            )
        if miss is None and budget is None:
            return {**data, "target_miss_rate": DEFAULT_TARGET_MISS_RATE}
        return data

    @property
    def target(self) -> CalibrationTarget:
        """The calibration target this config sets."""
        return CalibrationTarget.from_fields(self.target_miss_rate, self.target_false_detection_rate)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _merge_layers(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Deep-merge config layers, later ones winning. The two target keys are one setting: a layer that sets
    either replaces the target of the layers below, so a product can take a false-detection budget over the
    defaults' miss rate (within one layer, setting both is an error)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if any(key in layer for key in TARGET_KEYS):
            merged = {k: v for k, v in merged.items() if k not in TARGET_KEYS}
        merged = _deep_merge(merged, layer)
    return merged


def load_product_config(configs_dir: Path, product: str, overrides: dict[str, Any] | None = None) -> ProductConfig:
    """Resolve default.yaml + products/<product>.yaml + explicit overrides into a validated config."""
    validate_product_name(product)  # it becomes a path below configs_dir
    layers = [_read_yaml(configs_dir / "default.yaml"), _read_yaml(configs_dir / "products" / f"{product}.yaml")]
    for path, layer in zip(("default.yaml", f"products/{product}.yaml"), layers, strict=True):
        if all(layer.get(key) is not None for key in TARGET_KEYS):
            raise ConfigError(
                f"{configs_dir / path}: set exactly one of target_miss_rate and target_false_detection_rate, not both"
            )
    data = _merge_layers([*layers, overrides or {}])
    try:
        return ProductConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration for product {product!r}:\n{exc}") from exc
