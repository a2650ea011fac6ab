"""`kind: anomaly`: PatchCore fitted on good images only (also chosen when a dataset holds no defects).

Thresholds are in distance units; the export maps the distance onto `defect_probability` (0.5 = the calibrated
threshold) so the same server serves it. The report adds pixel AUROC and PRO when masks exist.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import torch

from datasets.layout import ImageRecord
from inspection.imaging import read_image
from inspection.metrics import robust_spread
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig
from inspection.progress import console, progress_task
from models.anomaly import FeaturesOf, PatchCore, PatchFeatures, fit_patchcore, image_batches, score_images
from models.anomaly_export import ServedAnomaly, check_served_parity, export_served_anomaly
from models.artifacts import FP32_FILE, RAW_EXPORT_FILE
from models.checkpoint import ANOMALY_KIND, AnomalyBundle
from models.kinds import register_kind
from models.onnx_export import optimize_onnx
from models.trunk_runtime import frozen_on_onnx_runtime
from training.calibration import max_accuracy_threshold
from training.kinds.base import ExportedOnnx, Fitted, Scores, TrainingJob, decoded_batches
from training.predict import Predictions

MIN_SCALE_FRACTION = 1e-3  # of the threshold: keeps the served sigmoid finite when good scores barely vary


_feature_runners: WeakKeyDictionary[PatchCore, dict[int, FeaturesOf]] = WeakKeyDictionary()


def patch_features_runner(model: PatchCore, spec: PreprocessSpec) -> FeaturesOf:
    """How PatchCore's frozen trunk runs while training fits and scores it: on a CPU by ONNX Runtime (several
    times faster than eager PyTorch there; models/trunk_runtime.py), on any other device by PyTorch. One session
    per model and input size (the graph's pads are fixed for one), kept while the model lives: the features depend
    on the frozen trunk alone, never on the bank."""
    if model.memory_bank.device.type != "cpu":
        return model.patch_features
    by_size = _feature_runners.setdefault(model, {})
    if spec.image_size not in by_size:
        run = frozen_on_onnx_runtime(PatchFeatures(model), spec.image_size, torch.get_num_threads())

        def runner(images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(run(images.numpy()))

        by_size[spec.image_size] = runner
    return by_size[spec.image_size]


def score_records(
    model: PatchCore, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and score records with PatchCore, with a progress bar: (distances (N,), maps (N, S, S))."""
    scores: list[np.ndarray] = [np.zeros(0, np.float32)]
    maps: list[np.ndarray] = [np.zeros((0, spec.image_size, spec.image_size), np.float32)]
    features_of = patch_features_runner(model, spec)
    for images in decoded_batches(records, batch_size, name):
        score, anomaly_map = score_images(model, images, spec, batch_size, features_of)
        scores.append(score)
        maps.append(anomaly_map)
    return np.concatenate(scores), np.concatenate(maps)


def served_sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function the exported graphs apply, in float32 as they do (so saturated parts tie as served),
    returned as float64."""
    z = np.clip(np.asarray(x, dtype=np.float64), -100.0, 100.0)  # exp() of more overflows; both ends saturated
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32).astype(np.float64)


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
            patch_features_runner(model, spec),
        )
    return model.cpu()


def anomaly_params(config: ProductConfig) -> dict[str, Any]:
    """PatchCore's MLflow parameters: the product's whole `anomaly:` block."""
    return {f"anomaly.{k}": v for k, v in config.anomaly.model_dump().items()}


@register_kind
class AnomalyKind:
    name = ANOMALY_KIND
    supports_int8 = False  # quantizing a bank of distances shifts every score; it would need its own gate
    typed = False
    bundle_type = AnomalyBundle

    def describe(self, job: TrainingJob) -> str:
        return f"memory bank from {len(job.train_goods)} good training images"

    def params(self, job: TrainingJob) -> dict[str, Any]:
        return {"n_train_good": len(job.train_goods), **anomaly_params(job.config)}

    def fit_share(self, job: TrainingJob) -> None:
        pass  # a memory bank is one pass over the good parts, on rank 0: nothing to share

    def fit(self, job: TrainingJob) -> Fitted:
        started = time.perf_counter()
        model = fit_patchcore_on(job.config, job.train_goods, job.spec, job.device)
        fit_seconds = time.perf_counter() - started
        rows = int(model.memory_bank.shape[0])
        console.print(f"memory bank: {rows} patches (bound {model.memory_bank_size})")
        val_scores, _ = score_records(model, job.parts["val"], job.spec, "validation", job.config.anomaly.batch_size)
        good = np.array([not r.is_defect for r in job.parts["val"]], dtype=bool)
        return Fitted(
            parts=model,
            val_scores=val_scores,
            info={"memory_bank_rows": rows, "n_train_good": len(job.train_goods)},
            training={
                "train_good_images": len(job.train_goods),
                "memory_bank_rows": rows,
                "fit_seconds": round(fit_seconds, 1),
            },
            report={"good_val_scores": val_scores[good]},
        )

    def extra_thresholds(self, val_labels: np.ndarray, val_scores: np.ndarray) -> dict[str, float]:
        if len(set(val_labels.tolist())) < 2:
            return {}
        return {"max_validation_accuracy": max_accuracy_threshold(val_labels, val_scores)}

    def bundle(self, job: TrainingJob, fitted: Fitted, threshold: float, info: dict[str, Any]) -> AnomalyBundle:
        scale = good_score_scale(fitted.report["good_val_scores"], threshold)
        console.print(f"anomaly score scale {scale:.4f} (robust spread of good validation distances)")
        config = job.config
        return AnomalyBundle(
            fitted.parts,
            job.spec,
            threshold,
            scale,
            config.target_miss_rate,
            info,
            target_false_detection_rate=config.target_false_detection_rate,
        )

    def score(self, bundle: AnomalyBundle, records: Sequence[ImageRecord], name: str) -> Scores:
        scores, maps = score_records(bundle.model, records, bundle.spec, name)
        return Scores(anomaly_predictions(scores), maps)

    def served_scores(self, bundle: AnomalyBundle, scores: np.ndarray) -> np.ndarray:
        # What ServedAnomaly computes: sigmoid((distance - threshold) / scale), 0.5 at the calibrated distance.
        return served_sigmoid((np.asarray(scores, dtype=np.float64) - bundle.threshold) / bundle.score_scale)

    def report_extras(
        self, bundle: AnomalyBundle, records: Sequence[ImageRecord], scores: Scores, fitted: Fitted | None
    ) -> dict[str, Any]:
        return {
            "anomaly": {
                "distance_threshold": round(float(bundle.threshold), 6),
                "score_scale": round(float(bundle.score_scale), 6),
                "served_threshold": 0.5,
                "memory_bank_rows": int(bundle.model.memory_bank.shape[0]),
            }
        }

    def export(
        self, bundle: AnomalyBundle, staging: Path, metadata: dict[str, Any], images: Sequence[np.ndarray]
    ) -> ExportedOnnx:
        served = ServedAnomaly(bundle.model, bundle.threshold, bundle.score_scale)
        raw = export_served_anomaly(served, bundle.spec, staging / RAW_EXPORT_FILE, metadata)
        fp32 = optimize_onnx(raw, staging / FP32_FILE)
        parity = check_served_parity(served, bundle.spec, fp32, images)
        console.print(
            f"parity: max |onnx - torch| probability {parity.max_abs_diff:.2e}, distance "
            f"{parity.score_max_abs_diff:.2e}, map {parity.map_max_abs_diff:.2e} over {parity.n_images} test images"
        )
        return ExportedOnnx(raw, fp32, parity)
