"""The last step of every kind of training run: save the bundle, register a version, write its report and card.

All or nothing: if the report cannot be built or written, the freshly registered version is deleted again, so
the registry never lists a version without its evaluation (promotion reads it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from mlflow.entities import Run

from datasets.layout import ImageRecord
from inspection.atomic import write_atomic_text
from inspection.report import EvaluationReport
from inspection.settings import Settings
from models.artifacts import MODEL_FILE
from models.checkpoint import AnyBundle, save_bundle
from models.model_card import write_model_card
from models.registry import mark_artifacts_published, mlflow_client, register_version
from training import tracking
from training.evaluate import write_report
from training.predict import Predictions


def publish_version(
    settings: Settings,
    product: str,
    run: Run,
    bundle: AnyBundle,
    tags: dict[str, str],
    records: Sequence[ImageRecord],
    predictions: Predictions,
    make_report: Callable[[int], EvaluationReport],
    evidence: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Log the bundle to the active run, register it, then `make_report(version)` and log the report, its plots
    (from `records` / `predictions`, the test split), the `evidence` JSON files (name -> object, beside the
    report) and the model card; returns (version, report)."""
    staging = settings.run_dir(product) / run.info.run_id
    save_bundle(bundle, staging / MODEL_FILE)
    tracking.log_files([staging / MODEL_FILE], artifact_path="model")
    version = register_version(settings, product, run.info.run_id, f"{run.info.artifact_uri}/model", tags)
    try:
        report = make_report(version)
        paths = write_report(report, records, predictions, staging / "evaluation")
        for name, data in (evidence or {}).items():
            paths[name] = write_atomic_text(staging / "evaluation" / name, json.dumps(data))
        tracking.log_files(list(paths.values()), artifact_path="model/evaluation")
        card = write_model_card(report, bundle.info, staging / "model_card.md")
        tracking.log_files([card], artifact_path="model")
        tracking.log_report(report)
        mark_artifacts_published(settings, product, version)  # complete: replicas may fetch it now
    except BaseException:
        mlflow_client(settings).delete_model_version(product, str(version))
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return version, report.to_json()
