"""Which ONNX file serves each product (the champion's accepted INT8 export if there is one, else its fp32 export)
with which threshold (QA's `served_threshold` tag when set on that file, else the file's own), and which one scores
in its shadow (the challenger's, chosen the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inspection.settings import Settings
from models import registry
from models.artifacts import serving_file
from models.served_file import threshold_applies
from models.served_threshold import tagged_threshold


@dataclass(frozen=True)
class ServedModel:
    product: str
    version: int
    path: Path
    threshold: float | None = None  # QA's served threshold (version tag); None: the ONNX metadata's


def _exported(product: str, info: registry.ModelVersionInfo | None) -> ServedModel | None:
    if info is None:
        return None
    path = serving_file(info.artifacts)
    if path is None:
        return None
    # QA's threshold only on the file it was chosen on; between an export and its threshold, the file's own.
    threshold = tagged_threshold(info.tags) if threshold_applies(info.tags, path) else None
    return ServedModel(product, info.version, path, threshold)


def champion_model(settings: Settings, product: str) -> ServedModel | None:
    """The exported champion of `product`, or None (no model, or champion not exported yet)."""
    return _exported(product, registry.champion(settings, product))


def challenger_model(settings: Settings, product: str) -> ServedModel | None:
    """The exported challenger of `product`, or None (no challenger, or not exported yet)."""
    return _exported(product, registry.challenger(settings, product))


def registered_products(settings: Settings) -> list[str]:
    """Every product with a registered model, sorted."""
    client = registry.mlflow_client(settings)
    return sorted(model.name for model in client.search_registered_models())
