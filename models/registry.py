"""Per-product model registry on MLflow's registry (SQLite backend under INSPECTION_HOME).

The registered model is named after the product. Alias `champion` marks what serves; the first version of a
product becomes champion by itself so a fresh install serves at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from inspection.errors import InspectionError
from inspection.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"

# MLflow logs schema migrations at INFO on every new store; that is noise on a CLI.
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ModelVersionInfo:
    product: str
    version: int
    run_id: str | None
    artifacts: Path
    aliases: tuple[str, ...]
    tags: dict[str, str]


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client on the embedded store of this INSPECTION_HOME."""
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise InspectionError(f"model artifacts at {uri} are not on local disk")
    return Path(unquote(parsed.path))


def _info(client: MlflowClient, product: str, version: int) -> ModelVersionInfo:
    mv = client.get_model_version(product, str(version))
    return ModelVersionInfo(
        product=product,
        version=int(mv.version),
        run_id=mv.run_id,
        artifacts=_local_path(mv.source or ""),
        aliases=tuple(mv.aliases),
        tags=dict(mv.tags),
    )


def register_version(settings: Settings, product: str, run_id: str, artifact_uri: str, tags: dict[str, str]) -> int:
    """Register the run's model folder as a new version; the first version becomes champion."""
    client = mlflow_client(settings)
    try:
        client.get_registered_model(product)
    except MlflowException:
        client.create_registered_model(product, description=f"Defect classifier for product {product}")
    version = int(client.create_model_version(product, source=artifact_uri, run_id=run_id, tags=tags).version)
    if champion(settings, product) is None:
        client.set_registered_model_alias(product, CHAMPION, str(version))
    return version


def list_versions(settings: Settings, product: str) -> list[ModelVersionInfo]:
    """All versions of a product, oldest first (empty when none was trained)."""
    client = mlflow_client(settings)
    found = client.search_model_versions(f"name='{product}'")
    return sorted((_info(client, product, int(mv.version)) for mv in found), key=lambda v: v.version)


def champion(settings: Settings, product: str) -> ModelVersionInfo | None:
    """The version that serves, or None when the product has none."""
    client = mlflow_client(settings)
    try:
        return _info(client, product, int(client.get_model_version_by_alias(product, CHAMPION).version))
    except MlflowException:
        return None


def resolve_version(settings: Settings, product: str, version: int | None = None) -> ModelVersionInfo:
    """A given version, or the champion; a clear error when the product has no trained model."""
    if version is None:
        found = champion(settings, product)
        if found is None:
            raise InspectionError(f"product {product!r} has no trained model: run `inspection train {product}`")
        return found
    try:
        return _info(mlflow_client(settings), product, version)
    except MlflowException as exc:
        raise InspectionError(f"product {product!r} has no model version {version}") from exc
