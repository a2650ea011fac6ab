"""Typed per-product configuration: configs/default.yaml overlaid by configs/products/<product>.yaml.

Unknown keys are rejected (a typo must not silently fall back to a default), and the resolved config is saved
with every training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspection.errors import ConfigError
from inspection.names import validate_product_name


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


class SplitConfig(_Strict):
    """Deterministic stratified split fractions; the test split is frozen once written."""

    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    seed: int = 0


class ProductConfig(_Strict):
    """How one product is trained and judged."""

    kind: Literal["classifier", "anomaly", "hybrid"] = "classifier"
    image_size: int = Field(default=224, ge=32, le=1024)
    color_mode: Literal["auto", "gray", "color"] = "auto"
    target_miss_rate: float = Field(default=0.02, ge=0, lt=1)
    seed: int = 0
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()


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


def load_product_config(configs_dir: Path, product: str, overrides: dict[str, Any] | None = None) -> ProductConfig:
    """Resolve default.yaml + products/<product>.yaml + explicit overrides into a validated config."""
    validate_product_name(product)  # it becomes a path below configs_dir
    data = _deep_merge(
        _read_yaml(configs_dir / "default.yaml"), _read_yaml(configs_dir / "products" / f"{product}.yaml")
    )
    data = _deep_merge(data, overrides or {})
    try:
        return ProductConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration for product {product!r}:\n{exc}") from exc
