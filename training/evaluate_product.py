"""`inspection evaluate P`: a registered model on its frozen test split or on an external labeled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from datasets.layout import scan_dataset
from datasets.splits import SPLITS_FILE, product_splits, split_records
from inspection.errors import DatasetError
from inspection.product_config import load_product_config
from inspection.progress import progress_task
from inspection.settings import Settings
from models.checkpoint import MODEL_FILE, AnomalyBundle, load_any_bundle
from models.registry import resolve_version
from training.anomaly_pipeline import anomaly_predictions, anomaly_report, score_records
from training.evaluate import build_report, write_report
from training.predict import predict_records


def evaluate_product(
    settings: Settings,
    product: str,
    *,
    data_dir: Path | None = None,
    version: int | None = None,
    out_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Score the chosen data with the champion (or `version`) and write report.json plus plots."""
    info = resolve_version(settings, product, version)
    bundle = load_any_bundle(info.artifacts / MODEL_FILE)
    if data_dir is not None:
        records = scan_dataset(data_dir)
        source = str(data_dir)
    else:
        root = settings.dataset_dir(product)
        if not (root / SPLITS_FILE).exists():
            raise DatasetError(f"product {product!r} has no frozen split yet; train it first")
        config = load_product_config(settings.configs_dir, product)
        all_records = scan_dataset(root)
        split = product_splits(root, all_records, config.split)
        records = split_records(all_records, split)["test"]
        source = "test split"
    if not records:
        raise DatasetError(f"no labeled images to evaluate in {source}")
    target = out_dir or settings.home / "reports" / product / f"v{info.version}"
    if isinstance(bundle, AnomalyBundle):
        scores, maps = score_records(bundle.model, records, bundle.spec, f"evaluating v{info.version}")
        report = anomaly_report(
            product, info.version, bundle, records, scores, maps, source, bundle.info.get("extra_thresholds")
        )
        return report, write_report(report, records, anomaly_predictions(scores), target)
    with progress_task(f"evaluating v{info.version}", len(records)) as advance:
        predictions = predict_records(bundle.model, records, bundle.spec, torch.device("cpu"), advance=advance)
    report = build_report(
        product,
        info.version,
        bundle.threshold,
        bundle.target_miss_rate,
        records,
        predictions,
        bundle.defect_types,
        data_source=source,
        extra_thresholds=bundle.info.get("extra_thresholds"),
    )
    return report, write_report(report, records, predictions, target)
