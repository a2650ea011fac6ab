"""`inspection train P` for `kind: anomaly`: PatchCore on good images only, calibrated, evaluated, registered.

Same steps and report as the classifier (training.pipeline): frozen splits, threshold calibrated on validation
to the target miss rate (or the good-score fallback), the DESIGN.md report on the test split plus pixel AUROC
and PRO when masks exist, MLflow tracking and a registered version. Thresholds are in distance units.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord, label_counts
from datasets.splits import Split
from inspection.imaging import read_image
from inspection.metrics import robust_spread
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig
from inspection.progress import console, progress_task
from inspection.settings import Settings
from models.anomaly import PatchCore, fit_patchcore, image_batches, score_images
from models.checkpoint import ANOMALY_TYPE, AnomalyBundle
from training import tracking
from training.calibration import calibrate_threshold, max_accuracy_threshold
from training.evaluate import build_report, pixel_metrics, recent_slice_block
from training.pipeline import TrainOutcome, log_run_inputs, print_run_header, run_params
from training.predict import Predictions
from training.publish import publish_version

MIN_SCALE_FRACTION = 1e-3  # of the threshold: keeps the served sigmoid finite when good scores barely vary


def score_records(
    model: PatchCore, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and score records with PatchCore, with a progress bar: (distances (N,), maps (N, S, S))."""
    scores: list[np.ndarray] = [np.zeros(0, np.float32)]
    maps: list[np.ndarray] = [np.zeros((0, spec.image_size, spec.image_size), np.float32)]
    with progress_task(f"scoring {name}", len(records)) as advance:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            score, anomaly_map = score_images(model, [read_image(r.path) for r in chunk], spec, batch_size)
            scores.append(score)
            maps.append(anomaly_map)
            advance(len(chunk))
    return np.concatenate(scores), np.concatenate(maps)


def anomaly_predictions(scores: np.ndarray) -> Predictions:
    """Distances as report predictions: one type, "anomaly", named for every flagged part."""
    return Predictions(defect_probability=scores, type_probabilities=np.ones((len(scores), 1), np.float32))


def good_score_scale(good_scores: np.ndarray, threshold: float) -> float:
    """Robust spread of good validation distances (IQR / 1.349, else std), floored above zero."""
    floor = max(MIN_SCALE_FRACTION * abs(threshold), 1e-6)
    if good_scores.size < 2:
        return max(0.1 * abs(threshold), floor)
    return robust_spread(good_scores, floor)


def fit_patchcore_on(
    config: ProductConfig, goods: list[ImageRecord], spec: PreprocessSpec, device: torch.device
) -> PatchCore:
    """PatchCore fitted on `goods` with the product's `anomaly:` settings, with a progress bar; on the CPU."""
    settings = config.anomaly
    model = PatchCore(
        layers=settings.layers,
        feature_dim=settings.feature_dim,
        memory_bank_size=settings.memory_bank_size,
        blur_sigma=settings.blur_sigma,
        seed=config.seed,
    ).to(device)
    images = (read_image(r.path) for r in goods)
    with progress_task("memory bank (good images)", len(goods)) as advance:
        fit_patchcore(
            model,
            image_batches(images, spec, settings.batch_size),
            settings.memory_bank_size,
            config.seed,
            settings.max_patches,
            advance,
        )
    return model.cpu()


def train_anomaly_product(
    settings: Settings,
    product: str,
    config: ProductConfig,
    records: list[ImageRecord],
    parts: dict[Split, list[ImageRecord]],
    spec: PreprocessSpec,
    device: torch.device,
    started: float,
) -> TrainOutcome:
    """Fit PatchCore on the training split's good images, calibrate, evaluate on test, register a version."""
    goods = [r for r in parts["train"] if not r.is_defect]
    print_run_header(
        product, "anomaly", records, parts, spec, device, f"memory bank from {len(goods)} good training images"
    )
    params = {
        **run_params(product, config, records, parts, spec, device),
        "kind": "anomaly",  # also when the config says classifier but the data holds no defects
        "n_train_good": len(goods),
        **{f"anomaly.{k}": v for k, v in config.anomaly.model_dump().items()},
    }
    with tracking.training_run(settings, product, params) as run:
        log_run_inputs(config, parts)
        fit_started = time.perf_counter()
        model = fit_patchcore_on(config, goods, spec, device)
        fit_seconds = time.perf_counter() - fit_started
        console.print(f"memory bank: {model.memory_bank.shape[0]} patches (bound {model.memory_bank_size})")
        val_scores, _ = score_records(model, parts["val"], spec, "validation", config.anomaly.batch_size)
        val_labels = np.array([r.is_defect for r in parts["val"]], dtype=np.int64)
        calibration = calibrate_threshold(val_labels, val_scores, config.target_miss_rate)
        scale = good_score_scale(val_scores[val_labels == 0], calibration.threshold)
        console.print(f"threshold {calibration.threshold:.4f} (distance), scale {scale:.4f}: {calibration.note}")
        extra_thresholds: dict[str, float] = {}
        if len(set(val_labels.tolist())) == 2:
            extra_thresholds["max_validation_accuracy"] = max_accuracy_threshold(val_labels, val_scores)
        test_scores, test_maps = score_records(model, parts["test"], spec, "test", config.anomaly.batch_size)
        recent_scores, _ = score_records(model, parts["recent"], spec, "recent line data", config.anomaly.batch_size)
        predictions = anomaly_predictions(test_scores)
        bundle = AnomalyBundle(
            model=model,
            spec=spec,
            threshold=calibration.threshold,
            score_scale=scale,
            target_miss_rate=config.target_miss_rate,
            info={
                "product": product,
                "kind": "anomaly",
                "run_id": run.info.run_id,
                "calibration": calibration.__dict__,
                "extra_thresholds": extra_thresholds,
                "label_counts": label_counts(records),
                "split_counts": {k: len(v) for k, v in parts.items()},
                "memory_bank_rows": int(model.memory_bank.shape[0]),
                "n_train_good": len(goods),
            },
        )

        def make_report(version: int) -> dict[str, Any]:
            report = anomaly_report(
                product, version, bundle, parts["test"], test_scores, test_maps, "test split", extra_thresholds
            )
            report["calibration"] = calibration.__dict__
            report["recent_line_data"] = recent_slice_block(
                parts["recent"], anomaly_predictions(recent_scores), [ANOMALY_TYPE], calibration.threshold, typed=False
            )
            report["training"] = {
                "train_good_images": len(goods),
                "memory_bank_rows": int(model.memory_bank.shape[0]),
                "fit_seconds": round(fit_seconds, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log_pixel_metrics(report)
            return report

        tags = {
            "kind": "anomaly",
            "target_miss_rate": str(config.target_miss_rate),
            "threshold": f"{calibration.threshold:.6f}",
        }
        version, report = publish_version(settings, product, run, bundle, tags, parts["test"], predictions, make_report)
    return TrainOutcome.registered(settings, product, version, run.info.run_id, report, calibration, started)


def log_pixel_metrics(report: dict[str, Any]) -> None:
    """Pixel AUROC and PRO of the test split as MLflow metrics of the active run, when masks gave them."""
    for key in ("pixel_auroc", "pro"):
        if report["test"].get(key) is not None:
            tracking.log_epoch({f"test_{key}": report["test"][key]}, step=0)


def anomaly_report(
    product: str,
    version: int | str | None,
    bundle: AnomalyBundle,
    records: Sequence[ImageRecord],
    scores: np.ndarray,
    maps: np.ndarray,
    data_source: str,
    extra_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The DESIGN.md report for an anomaly model (threshold in distance units), plus pixel metrics with masks."""
    report = build_report(
        product,
        version,
        bundle.threshold,
        bundle.target_miss_rate,
        records,
        anomaly_predictions(scores),
        [ANOMALY_TYPE],
        data_source=data_source,
        extra_thresholds=extra_thresholds,
        typed=False,
    )
    pixels = pixel_metrics(records, maps)
    if pixels is not None:
        report["test"].update(pixels)
    report["kind"] = "anomaly"
    report["anomaly"] = {
        "distance_threshold": round(float(bundle.threshold), 6),
        "score_scale": round(float(bundle.score_scale), 6),
        "served_threshold": 0.5,
        "memory_bank_rows": int(bundle.model.memory_bank.shape[0]),
    }
    return report
