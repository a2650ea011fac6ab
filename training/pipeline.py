"""`inspection train P`: import-to-registry composition of the training steps for one product."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord, label_counts, require_trainable, scan_dataset
from datasets.splits import Split, product_splits, split_records
from inspection.names import GOOD_LABEL
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig, load_product_config
from inspection.progress import console, progress_task
from inspection.settings import Settings
from models.checkpoint import ModelBundle
from models.classifier import DefectClassifier
from models.registry import resolve_version
from training import tracking
from training.augment import build_augmenter
from training.calibration import Calibration, calibrate_threshold, max_accuracy_threshold
from training.data import defect_type_index, load_prepared, resolve_color_mode
from training.evaluate import build_report, recent_slice_block
from training.features import cached_views, trunk_features
from training.predict import Predictions, predict_records
from training.publish import publish_version
from training.trainer import EpochStats, TrainingData, TrainResult, train_classifier


@dataclass
class TrainOutcome:
    product: str
    version: int
    run_id: str
    report: dict[str, Any]
    calibration: Calibration
    artifacts: Path
    seconds: float

    @classmethod
    def registered(
        cls,
        settings: Settings,
        product: str,
        version: int,
        run_id: str,
        report: dict[str, Any],
        calibration: Calibration,
        started: float,
    ) -> TrainOutcome:
        """The outcome of a run that registered `version`, timed from `started` (a perf_counter reading)."""
        artifacts = resolve_version(settings, product, version).artifacts
        return cls(product, version, run_id, report, calibration, artifacts, time.perf_counter() - started)


def select_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present, so the same command uses a GPU where there is one."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _targets(records: list[ImageRecord], defect_types: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    is_defect = torch.tensor([r.label != GOOD_LABEL for r in records], dtype=torch.float32)
    return is_defect, torch.from_numpy(defect_type_index(records, defect_types))


def _prepare_data(
    model: DefectClassifier,
    parts: dict[Split, list[ImageRecord]],
    config: ProductConfig,
    spec: PreprocessSpec,
    defect_types: list[str],
    device: torch.device,
) -> TrainingData:
    views, batch = config.train.augmented_views, config.train.batch_size
    augmenter = build_augmenter(config.augment, seed=config.seed)
    total = views * len(parts["train"]) + len(parts["val"])
    model.to(device)
    with progress_task("trunk features", total) as advance:
        train_views = cached_views(model, parts["train"], spec, device, views, augmenter, batch, advance)
        val_images = [load_prepared(r, spec) for r in parts["val"]]
        val_features = trunk_features(model, val_images, spec, device, batch, None, advance)
    train_is_defect, train_type = _targets(parts["train"], defect_types)
    val_is_defect, val_type = _targets(parts["val"], defect_types)
    return TrainingData(train_views, train_is_defect, train_type, val_features, val_is_defect, val_type)


def _score(
    model: DefectClassifier, records: list[ImageRecord], spec: PreprocessSpec, device: torch.device, name: str
) -> Predictions:
    with progress_task(f"scoring {name}", len(records)) as advance:
        return predict_records(model, records, spec, device, advance=advance)


def print_run_header(
    product: str,
    kind: str | None,
    records: list[ImageRecord],
    parts: dict[Split, list[ImageRecord]],
    spec: PreprocessSpec,
    device: torch.device,
    detail: str = "",
) -> None:
    """The line every training run starts with: product (and kind), label counts, split sizes, input, device."""
    console.print(
        f"[bold]{product}[/]{f' ({kind})' if kind else ''}: {len(records)} images {label_counts(records)}; split "
        + ", ".join(f"{k} {len(v)}" for k, v in parts.items())
        + (f"; {detail}" if detail else "")
        + f"; {spec.color_mode} {spec.image_size}px on {device}"
    )


def run_params(
    product: str,
    config: ProductConfig,
    records: list[ImageRecord],
    parts: dict[Split, list[ImageRecord]],
    spec: PreprocessSpec,
    device: torch.device,
) -> dict[str, Any]:
    """The MLflow parameters every kind of training run records; each kind adds its own schedule."""
    return {
        "product": product,
        "kind": config.kind,
        "n_images": len(records),
        "device": str(device),
        "color_mode": spec.color_mode,
        **{f"split_{k}": len(v) for k, v in parts.items()},
        "image_size": config.image_size,
        "seed": config.seed,
        "target_miss_rate": config.target_miss_rate,
    }


def log_run_inputs(config: ProductConfig, parts: dict[Split, list[ImageRecord]]) -> None:
    """Save the resolved config and the split with the active run, so a version can be traced to its data."""
    tracking.log_json(config.model_dump(), "config/resolved_config.json")
    tracking.log_json({"splits": {k: [r.relpath for r in v] for k, v in parts.items()}}, "config/splits.json")


def learnable_defect_types(parts: dict[Split, list[ImageRecord]]) -> list[str]:
    """The classifier's classes: defect labels outside the recent slice (a type seen only there, never trained on,
    would be a class without a single training image; its frames are still evaluated, as an unknown type)."""
    return sorted({r.label for side in ("train", "val", "test") for r in parts[side]} - {GOOD_LABEL})


def classifier_params(config: ProductConfig, defect_types: list[str]) -> dict[str, Any]:
    """The classifier's MLflow parameters: its classes and its whole `train:` schedule."""
    return {"defect_types": ",".join(defect_types), **{f"train.{k}": v for k, v in config.train.model_dump().items()}}


def fit_classifier(
    settings: Settings,
    product: str,
    config: ProductConfig,
    parts: dict[Split, list[ImageRecord]],
    spec: PreprocessSpec,
    defect_types: list[str],
    device: torch.device,
    resume: bool,
) -> tuple[DefectClassifier, TrainResult, Path]:
    """Cache trunk features, train with per-epoch MLflow metrics inside the active run; returns the model on the
    CPU, the training history and the resumable checkpoint's path (the caller deletes it once registered)."""
    model = DefectClassifier(len(defect_types), config.train.trainable_stages, config.train.dropout)
    data = _prepare_data(model, parts, config, spec, defect_types, device)
    with progress_task("training epochs", config.train.epochs + 1) as advance:

        def on_epoch(stats: EpochStats) -> None:
            tracking.log_epoch(
                {"train_loss": stats.train_loss, "val_loss": stats.val_loss, "val_auroc": stats.val_auroc},
                step=stats.epoch,
            )
            auroc_text = "n/a" if stats.val_auroc is None else f"{stats.val_auroc:.4f}"
            console.print(
                f"epoch {stats.epoch:>3} {stats.phase:<8} train loss {stats.train_loss:.4f} "
                f"val loss {stats.val_loss:.4f} val AUROC {auroc_text}"
            )
            advance(1)

        checkpoint = settings.run_dir(product) / "checkpoint.pt"
        result = train_classifier(model, data, config.train, config.seed, device, checkpoint, resume, on_epoch)
    del data
    return model.cpu(), result, checkpoint


def train_product(
    settings: Settings,
    product: str,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train, calibrate on validation, evaluate on the frozen test split, and register a new version.

    `train_overrides` replaces keys of the product's `train:` config for this run (the demo's short schedule);
    like every resolved setting it is saved with the run."""
    started = time.perf_counter()
    overrides: dict[str, Any] = {"train": dict(train_overrides or {})}
    if epochs is not None:
        overrides["train"]["epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    config = load_product_config(settings.configs_dir, product, overrides)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    require_trainable(records, product)
    assignment = product_splits(root, records, config.split)
    parts = split_records(records, assignment)
    spec = PreprocessSpec(image_size=config.image_size, color_mode=resolve_color_mode(records, config.color_mode))
    device = select_device(settings.device)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    seed_everything(config.seed)
    if config.kind == "anomaly" or not any(r.is_defect for r in records):
        # Imported here: the anomaly pipeline reuses this module's helpers.
        from training.anomaly_pipeline import train_anomaly_product

        return train_anomaly_product(settings, product, config, records, parts, spec, device, started)
    if config.kind == "hybrid":
        from training.hybrid_pipeline import train_hybrid_product

        return train_hybrid_product(settings, product, config, records, parts, spec, device, started, resume)
    defect_types = learnable_defect_types(parts)
    print_run_header(product, None, records, parts, spec, device)
    params = {**run_params(product, config, records, parts, spec, device), **classifier_params(config, defect_types)}
    with tracking.training_run(settings, product, params) as run:
        log_run_inputs(config, parts)
        model, result, checkpoint = fit_classifier(settings, product, config, parts, spec, defect_types, device, resume)
        cpu = torch.device("cpu")
        val = _score(model, parts["val"], spec, cpu, "validation")
        val_labels = np.array([r.is_defect for r in parts["val"]], dtype=np.int64)
        calibration = calibrate_threshold(val_labels, val.defect_probability, config.target_miss_rate)
        console.print(f"threshold {calibration.threshold:.4f}: {calibration.note}")
        extra_thresholds = {"max_validation_accuracy": max_accuracy_threshold(val_labels, val.defect_probability)}
        test = _score(model, parts["test"], spec, cpu, "test")
        recent = _score(model, parts["recent"], spec, cpu, "recent line data") if parts["recent"] else None
        bundle = ModelBundle(
            model=model,
            spec=spec,
            defect_types=defect_types,
            threshold=calibration.threshold,
            target_miss_rate=config.target_miss_rate,
            info={
                "product": product,
                "run_id": run.info.run_id,
                "best_epoch": result.best_epoch,
                "calibration": calibration.__dict__,
                "extra_thresholds": extra_thresholds,
                "label_counts": label_counts(records),
                "split_counts": {k: len(v) for k, v in parts.items()},
            },
        )

        def make_report(version: int) -> dict[str, Any]:
            report = build_report(
                product,
                version,
                calibration.threshold,
                config.target_miss_rate,
                parts["test"],
                test,
                defect_types,
                data_source="test split",
                extra_thresholds=extra_thresholds,
            )
            report["calibration"] = calibration.__dict__
            report["recent_line_data"] = recent_slice_block(
                parts["recent"], recent, defect_types, calibration.threshold
            )
            report["training"] = {
                "epochs_run": len(result.history),
                "best_epoch": result.best_epoch + 1,
                "stopped_early": result.stopped_early,
                "seconds": round(time.perf_counter() - started, 1),
            }
            return report

        tags = {"target_miss_rate": str(config.target_miss_rate), "threshold": f"{calibration.threshold:.6f}"}
        version, report = publish_version(settings, product, run, bundle, tags, parts["test"], test, make_report)
        checkpoint.unlink(missing_ok=True)
    return TrainOutcome.registered(settings, product, version, run.info.run_id, report, calibration, started)
