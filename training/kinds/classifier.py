"""`kind: classifier` (the default): EfficientNet-Lite0 fine-tuned on labeled good and defective images.

The lower stages are frozen, so their outputs are cached once per augmented view (training.features); a linear
probe, then the upper stages and heads train on the cache (training.trainer) with early stopping on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord
from datasets.splits import Split
from inspection.names import GOOD_LABEL
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig
from inspection.progress import console, progress_task
from models.artifacts import FP32_FILE, RAW_EXPORT_FILE
from models.checkpoint import CLASSIFIER_KIND, ModelBundle
from models.classifier import MAP_FLOOR_QUANTILE, DefectClassifier
from models.kinds import register_kind
from models.onnx_export import export_classifier, optimize_onnx
from models.onnx_parity import check_parity
from training import distributed, tracking
from training.augment import build_augmenter
from training.calibration import max_accuracy_threshold
from training.data import defect_targets, defect_type_index, load_prepared, tta_flips_of
from training.features import cached_views, trunk_features, trunk_runner
from training.kinds.base import ExportedOnnx, Fitted, Scores, TrainingJob
from training.predict import predict_records
from training.trainer import EpochStats, TrainingData, TrainResult, train_classifier


def learnable_defect_types(parts: dict[Split, list[ImageRecord]]) -> list[str]:
    """The classifier's classes: defect labels outside the recent slice (a type seen only there, never trained on,
    would be a class without a single training image; its frames are still evaluated, as an unknown type)."""
    return sorted({r.label for side in ("train", "val", "test") for r in parts[side]} - {GOOD_LABEL})


def classifier_params(config: ProductConfig, defect_types: list[str]) -> dict[str, Any]:
    """The classifier's MLflow parameters: its classes and its whole `train:` schedule."""
    return {"defect_types": ",".join(defect_types), **{f"train.{k}": v for k, v in config.train.model_dump().items()}}


def _targets(
    records: list[ImageRecord], defect_types: list[str], soft_label_key: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    is_defect = torch.from_numpy(defect_targets(records, soft_label_key))
    return is_defect, torch.from_numpy(defect_type_index(records, defect_types))


def _prepare_data(
    model: DefectClassifier, job: TrainingJob, defect_types: list[str], device: torch.device
) -> TrainingData:
    config, parts, spec = job.config, job.parts, job.spec
    views, batch = config.train.augmented_views, config.train.batch_size
    # Under torchrun each rank caches a contiguous block of the images and the blocks are gathered, so every rank
    # holds the whole cache. Each rank draws its own augmentations (rank 0 with the seed a plain process uses):
    # with one seed the blocks would repeat each other's random draws image for image.
    train_seed = config.seed + (distributed.rank() if distributed.is_sharded(len(parts["train"])) else 0)
    augmenter = build_augmenter(config.augment, seed=train_seed)
    train, val = distributed.shard(parts["train"]), distributed.shard(parts["val"])
    model.to(device)
    run_trunk = trunk_runner(model, spec, device)
    with progress_task("trunk features", views * len(train) + len(val)) as advance:
        train_views = cached_views(run_trunk, train, spec, views, augmenter, batch, advance)
        val_images = [load_prepared(r, spec) for r in val]
        val_features = trunk_features(run_trunk, val_images, spec, batch, None, advance)
    train_views = distributed.gather_shards(train_views, len(parts["train"]), dim=1)
    val_features = distributed.gather_shards(val_features, len(parts["val"]), dim=0)
    # Soft labels only where the loss is trained: validation's AUROC and early stopping judge the folder labels,
    # as the calibration and the report do.
    train_is_defect, train_type = _targets(parts["train"], defect_types, config.train.soft_label_key)
    val_is_defect, val_type = _targets(parts["val"], defect_types)
    return TrainingData(train_views, train_is_defect, train_type, val_features, val_is_defect, val_type)


def fit_classifier(job: TrainingJob, defect_types: list[str]) -> tuple[DefectClassifier, TrainResult]:
    """Cache trunk features, train with per-epoch MLflow metrics inside the active run; returns the model on the
    CPU and the training history (the resumable checkpoint stays at `job.checkpoint` until cleanup)."""
    config = job.config
    model = DefectClassifier(
        len(defect_types),
        config.train.trainable_stages,
        config.train.dropout,
        backbone=config.backbone,
        tta_flips=tta_flips_of(config),
    )
    data = _prepare_data(model, job, defect_types, job.device)
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

        result = train_classifier(
            model, data, config.train, config.seed, job.device, job.checkpoint, job.resume, on_epoch
        )
    _set_map_floor(model, data, config.train.batch_size, job.device)
    del data
    return model.cpu(), result


def _set_map_floor(model: DefectClassifier, data: TrainingData, batch_size: int, device: torch.device) -> None:
    """The trained model's map floor, from the activation peaks of the validation images (cached trunk features)."""
    model.eval()
    peaks = [
        model.activation_peaks(features.to(device, torch.float32)).cpu()  # the cache is float16, on the CPU
        for features in data.val_features.split(batch_size)
    ]
    floor = model.set_map_floor(torch.cat(peaks) if peaks else torch.zeros(0), data.val_is_defect)
    quantile = f"the {MAP_FLOOR_QUANTILE:.0%} quantile of validation defects' peaks"
    if floor > 0:
        console.print(f"anomaly maps: a peak under {floor:.3g} ({quantile}) draws dimmer")
    else:  # no validation defect, or too few raise the logit anywhere: no floor to learn
        console.print(f"anomaly maps: each drawn to its own peak ({quantile} is 0)")


def classifier_training_block(result: TrainResult) -> dict[str, Any]:
    """The report's `training` figures of a classifier fit (epochs are 1-based there)."""
    return {
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch + 1,
        "stopped_early": result.stopped_early,
    }


def classifier_scores(
    model: DefectClassifier, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str
) -> Scores:
    """Probabilities of the whole classifier on decoded records (training/predict.py), with a progress bar."""
    with progress_task(f"scoring {name}", len(records)) as advance:
        predictions = predict_records(model, records, spec, torch.device("cpu"), advance=advance)
    return Scores(predictions)


@register_kind
class ClassifierKind:
    name = CLASSIFIER_KIND
    supports_int8 = True
    typed = True
    bundle_type = ModelBundle

    def describe(self, job: TrainingJob) -> str:
        return ""

    def params(self, job: TrainingJob) -> dict[str, Any]:
        return classifier_params(job.config, learnable_defect_types(job.parts))

    def fit(self, job: TrainingJob) -> Fitted:
        defect_types = learnable_defect_types(job.parts)
        model, result = fit_classifier(job, defect_types)
        val = classifier_scores(model, job.parts["val"], job.spec, "validation")
        return Fitted(
            parts=(model, defect_types),
            val_scores=val.predictions.defect_probability,
            info={"best_epoch": result.best_epoch},
            training=classifier_training_block(result),
            cleanup=lambda: job.checkpoint.unlink(missing_ok=True),
        )

    def fit_share(self, job: TrainingJob) -> None:
        fit_classifier(job, learnable_defect_types(job.parts))

    def extra_thresholds(self, val_labels: np.ndarray, val_scores: np.ndarray) -> dict[str, float]:
        return {"max_validation_accuracy": max_accuracy_threshold(val_labels, val_scores)}

    def bundle(self, job: TrainingJob, fitted: Fitted, threshold: float, info: dict[str, Any]) -> ModelBundle:
        model, defect_types = fitted.parts
        config = job.config
        return ModelBundle(
            model,
            job.spec,
            defect_types,
            threshold,
            config.target_miss_rate,
            info,
            target_false_detection_rate=config.target_false_detection_rate,
        )

    def score(self, bundle: ModelBundle, records: Sequence[ImageRecord], name: str) -> Scores:
        return classifier_scores(bundle.model, records, bundle.spec, name)

    def served_scores(self, bundle: ModelBundle, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64)  # the classifier serves the probability it was calibrated on

    def report_extras(
        self, bundle: ModelBundle, records: Sequence[ImageRecord], scores: Scores, fitted: Fitted | None
    ) -> dict[str, Any]:
        return {}

    def export(
        self, bundle: ModelBundle, staging: Path, metadata: dict[str, Any], images: Sequence[np.ndarray]
    ) -> ExportedOnnx:
        raw = export_classifier(bundle.model, bundle.spec, staging / RAW_EXPORT_FILE, metadata)
        fp32 = optimize_onnx(raw, staging / FP32_FILE)
        parity = check_parity(bundle.model, bundle.spec, fp32, images)
        console.print(f"parity: max |onnx - torch| = {parity.max_abs_diff:.2e} over {parity.n_images} test images")
        return ExportedOnnx(raw, fp32, parity)
