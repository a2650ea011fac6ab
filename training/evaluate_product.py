"""`inspection evaluate P`: a registered model on its frozen test split or on an external labeled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets.layout import scan_dataset
from datasets.splits import SPLITS_FILE, product_splits, split_records
from inspection.errors import DatasetError
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.artifacts import bundle_path
from models.registry import resolve_version
from training.evaluate import write_report
from training.kinds import kind_of, load_bundle
from training.pipeline import kind_report


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
    bundle = load_bundle(bundle_path(info.artifacts))
    kind = kind_of(bundle)
    if data_dir is not None:
        records = scan_dataset(data_dir)
        source = str(data_dir)
    else:
        root = settings.dataset_dir(product)
        if not (root / SPLITS_FILE).exists():
            raise DatasetError(f"product {product!r} has no frozen split yet; train it first")
        config = load_product_config(settings.configs_dir, product)
        all_records = scan_dataset(root)
        records = split_records(all_records, product_splits(root, all_records, config.split))["test"]
        source = "test split"
    if not records:
        raise DatasetError(f"no labeled images to evaluate in {source}")
    target = out_dir or settings.home / "reports" / product / f"v{info.version}"
    scores = kind.score(bundle, records, f"evaluating v{info.version}")
    report = kind_report(kind, bundle, product, info.version, records, scores, source)
    return report.to_json(), write_report(report, records, scores.predictions, target)
