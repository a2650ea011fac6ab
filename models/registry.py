"""Per-product model registry on MLflow's registry: an embedded SQLite store under INSPECTION_HOME, or an MLflow
tracking server (INSPECTION_MLFLOW_TRACKING_URI) shared by every replica and training job.

A version's artifacts are a local folder either way (models/artifacts.py says what is in it): the embedded store
keeps them in place; from a server they are downloaded, on first use, into INSPECTION_HOME/model-cache, once per
artifacts revision (the `artifacts_revision` tag that publish_artifacts moves when export adds files).

The registered model is named after the product. Alias `champion` marks what serves; the first version of a
product becomes champion by itself so a fresh install serves at once. Every later version becomes `challenger`
(the newest candidate awaiting promotion); the gate that moves `champion` lives in models/promotion.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from inspection.errors import InspectionError
from inspection.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
# Where the pipeline leaves the frozen-test-split report inside a version's artifacts.
REPORT_RELPATH = Path("evaluation") / "report.json"

# MLflow logs schema migrations at INFO on every new store; that is noise on a CLI.
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


ARTIFACTS_REVISION_TAG = "artifacts_revision"


@dataclass(frozen=True)
class ModelVersionInfo:
    product: str
    version: int
    run_id: str | None
    aliases: tuple[str, ...]
    tags: dict[str, str]
    source: str  # where MLflow keeps the version's artifacts (a file: URI, or the server's mlflow-artifacts:)
    settings: Settings = field(repr=False, compare=False)

    @cached_property
    def artifacts(self) -> Path:
        """The version's artifact folder on local disk (downloaded from the server on first use)."""
        return _local_artifacts(self)


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client on the MLflow server, or on the embedded store of this INSPECTION_HOME."""
    if settings.mlflow_tracking_uri is None:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.resolved_mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def _local_artifacts(info: ModelVersionInfo) -> Path:
    """The embedded store's folder itself, or this revision's copy in the model cache (downloaded once)."""
    if (local := _local_path(info.source)) is not None:
        return local
    versions = info.settings.model_cache_dir / info.product / str(info.version)
    revision = info.tags.get(ARTIFACTS_REVISION_TAG)
    if revision is None:
        # Registered but still being written (training logs its report after registering): nothing to read yet,
        # and nothing is cached, so the complete files are fetched once they are published.
        (unpublished := versions / ".unpublished").mkdir(parents=True, exist_ok=True)
        return unpublished
    folder = versions / revision
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".download-"))
    try:
        downloaded = _download_complete(info, staging)
        try:
            downloaded.rename(folder)  # whole or not at all: a reader never sees a half-downloaded version
        except OSError:
            if not folder.is_dir():  # not another process of this home having finished the same download first
                raise
    except MlflowException as exc:
        raise InspectionError(f"cannot download {info.product} v{info.version} from {info.source}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in folder.parent.iterdir():  # older revisions: a loaded ONNX session does not need its file
        if stale != folder and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    return folder


DOWNLOAD_ATTEMPTS = 3


def _remote_sizes(info: ModelVersionInfo) -> dict[str, int]:
    """Every file of the version on the server, by relative path, with the size the server lists for it."""
    repository = get_artifact_repository(info.source, tracking_uri=info.settings.resolved_mlflow_tracking_uri)
    sizes: dict[str, int] = {}
    pending: list[str | None] = [None]
    while pending:
        for entry in repository.list_artifacts(pending.pop()):
            if entry.is_dir:
                pending.append(entry.path)
            elif entry.file_size is not None:
                sizes[entry.path] = int(entry.file_size)
    return sizes


def _download_complete(info: ModelVersionInfo, staging: Path) -> Path:
    """Download the version's artifacts into `staging` and check every file against the server's listing.

    A truncated file was seen once under heavy load (an ONNX file that failed to parse): the download is checked
    and retried rather than cached broken, since a broken cache entry would be served until the next revision."""
    expected = _remote_sizes(info)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        target = staging / f"attempt-{attempt}"
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(target), tracking_uri=info.settings.resolved_mlflow_tracking_uri
            )
        )
        wrong = [
            name
            for name, size in expected.items()
            if not (downloaded / name).is_file() or (downloaded / name).stat().st_size != size
        ]
        if not wrong:
            return downloaded
        log.warning("download of %s v%s incomplete (%s); attempt %d", info.product, info.version, wrong, attempt)
    raise InspectionError(f"cannot download {info.product} v{info.version} completely: {', '.join(wrong)} differ")


def _info(client: MlflowClient, settings: Settings, product: str, version: int) -> ModelVersionInfo:
    mv = client.get_model_version(product, str(version))
    return ModelVersionInfo(
        product=product,
        version=int(mv.version),
        run_id=mv.run_id,
        aliases=tuple(mv.aliases),
        tags=dict(mv.tags),
        source=mv.source or "",
        settings=settings,
    )


def mark_artifacts_published(settings: Settings, product: str, version: int) -> None:
    """Tell every reader that the version's artifacts on the server are complete, or changed: they fetch them anew.
    A no-op on the embedded store, whose readers use the files in place."""
    if settings.mlflow_tracking_uri is not None:
        mlflow_client(settings).set_model_version_tag(product, str(version), ARTIFACTS_REVISION_TAG, uuid.uuid4().hex)


def publish_artifacts(settings: Settings, info: ModelVersionInfo, subdir: str) -> None:
    """Make the files written into `info.artifacts / subdir` part of the version for every reader: uploaded to the
    server, then published (a no-op on the embedded store, where they are in place already)."""
    if _local_path(info.source) is not None:
        return
    base = info.source.rstrip("/")
    repository = get_artifact_repository(f"{base}/{subdir}", tracking_uri=settings.resolved_mlflow_tracking_uri)
    repository.log_artifacts(str(info.artifacts / subdir))
    mark_artifacts_published(settings, info.product, info.version)


def register_version(settings: Settings, product: str, run_id: str, artifact_uri: str, tags: dict[str, str]) -> int:
    """Register the run's model folder as a new version; the first becomes champion, later ones challenger."""
    client = mlflow_client(settings)
    try:
        client.get_registered_model(product)
    except MlflowException:
        client.create_registered_model(product, description=f"Defect classifier for product {product}")
    version = int(client.create_model_version(product, source=artifact_uri, run_id=run_id, tags=tags).version)
    alias = CHAMPION if champion(settings, product) is None else CHALLENGER
    client.set_registered_model_alias(product, alias, str(version))
    return version


def list_versions(settings: Settings, product: str) -> list[ModelVersionInfo]:
    """All versions of a product, oldest first (empty when none was trained)."""
    client = mlflow_client(settings)
    found = client.search_model_versions(f"name='{product}'")
    return sorted((_info(client, settings, product, int(mv.version)) for mv in found), key=lambda v: v.version)


def registered_products(settings: Settings) -> list[str]:
    """Every product with a registered model, sorted."""
    return sorted(model.name for model in mlflow_client(settings).search_registered_models())


def version_with_alias(settings: Settings, product: str, alias: str) -> ModelVersionInfo | None:
    """The version an alias points at, or None when the alias (or the product) does not exist."""
    client = mlflow_client(settings)
    try:
        return _info(client, settings, product, int(client.get_model_version_by_alias(product, alias).version))
    except MlflowException:
        return None


def champion(settings: Settings, product: str) -> ModelVersionInfo | None:
    """The version that serves, or None when the product has none."""
    return version_with_alias(settings, product, CHAMPION)


def challenger(settings: Settings, product: str) -> ModelVersionInfo | None:
    """The newest candidate awaiting promotion, or None."""
    return version_with_alias(settings, product, CHALLENGER)


class UnknownModelVersion(InspectionError):  # noqa: N818 (reads as the outcome at call sites)
    """No registered version with that number (HTTP answers 404)."""


def resolve_version(settings: Settings, product: str, version: int | None = None) -> ModelVersionInfo:
    """A given version, or the champion; a clear error when the product has no trained model."""
    if version is None:
        found = champion(settings, product)
        if found is None:
            raise InspectionError(f"product {product!r} has no trained model: run `inspection train {product}`")
        return found
    try:
        return _info(mlflow_client(settings), settings, product, version)
    except MlflowException as exc:
        raise UnknownModelVersion(f"product {product!r} has no model version {version}") from exc


def set_alias(settings: Settings, product: str, alias: str, version: int) -> None:
    """Point an alias at an existing version (no gate: promotion.promote is the gated way to move champion)."""
    resolve_version(settings, product, version)
    mlflow_client(settings).set_registered_model_alias(product, alias, str(version))


def delete_alias(settings: Settings, product: str, alias: str) -> None:
    """Remove an alias; removing one that is not set is not an error."""
    if version_with_alias(settings, product, alias) is not None:
        mlflow_client(settings).delete_registered_model_alias(product, alias)


def model_tags(settings: Settings, product: str) -> dict[str, str]:
    """Tags of the product's registered model (empty when the product has no model yet)."""
    try:
        return dict(mlflow_client(settings).get_registered_model(product).tags)
    except MlflowException:
        return {}


def set_model_tag(settings: Settings, product: str, key: str, value: str) -> None:
    """Set one tag on the product's registered model (values up to 5,000 bytes are portable)."""
    try:
        mlflow_client(settings).set_registered_model_tag(product, key, value)
    except MlflowException as exc:
        raise InspectionError(f"product {product!r} has no registered model") from exc


def set_version_tags(settings: Settings, product: str, version: int, tags: dict[str, str]) -> None:
    """Set tags on one version (an existing one: a clear error otherwise)."""
    resolve_version(settings, product, version)
    client = mlflow_client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(product, str(version), key, value)


def read_report(info: ModelVersionInfo) -> dict[str, Any] | None:
    """The version's frozen-test-split evaluation report, or None when it is missing or unreadable."""
    path = info.artifacts / REPORT_RELPATH
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable evaluation report %s: %s", path, exc)
        return None
    return report if isinstance(report, dict) else None
