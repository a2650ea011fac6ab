"""MLflow tracking for training runs: params, per-epoch metrics, the report, plots and the resolved config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from inspection.report import EvaluationReport
from inspection.settings import Settings
from models.registry import mlflow_client


def _experiment_id(client: MlflowClient, settings: Settings, product: str) -> str:
    found = client.get_experiment_by_name(product)
    if found is not None:
        return found.experiment_id
    if settings.mlflow_tracking_uri is not None:
        return client.create_experiment(product)  # the server chooses: its artifact proxy, shared by all
    # An explicit artifact location keeps artifacts under INSPECTION_HOME, whatever the working directory.
    location = (settings.mlflow_artifacts_dir / product).resolve().as_uri()
    return client.create_experiment(product, artifact_location=location)


@contextmanager
def training_run(settings: Settings, product: str, params: dict[str, Any]) -> Iterator[Any]:
    """Start an MLflow run for one product; failed runs are marked FAILED, never left RUNNING."""
    client = mlflow_client(settings)
    mlflow.set_tracking_uri(settings.resolved_mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=_experiment_id(client, settings, product)) as run:
        mlflow.log_params(params)
        yield run


def log_epoch(stats: dict[str, Any], step: int) -> None:
    """Per-epoch metrics (numbers only; None values such as an undefined AUROC are skipped)."""
    mlflow.log_metrics({k: float(v) for k, v in stats.items() if isinstance(v, int | float)}, step=step)


def log_report(report: EvaluationReport, prefix: str = "test") -> None:
    """The report's headline numbers (and pixel metrics, when masks gave them) as metrics, so runs can be
    compared in the MLflow UI."""
    block = report.test
    for key in ("miss_rate", "false_detection_rate", "auroc", "accuracy", "pixel_auroc", "pro"):
        if (value := getattr(block, key)) is not None:
            mlflow.log_metric(f"{prefix}_{key}", float(value))


def log_files(paths: list[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_json(data: dict[str, Any], name: str) -> None:
    mlflow.log_text(json.dumps(data, indent=2, default=str), name)
