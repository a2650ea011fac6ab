"""`inspection train P`: the one training skeleton every kind runs through.

data -> fit -> calibrate -> score -> report -> publish. The kind (models.kinds, implemented in training.kinds)
supplies the fit, its scores, its saved bundle, the map from its scores to the served probability and its report
extras; everything else (the frozen splits, the threshold calibrated on validation to the product's target miss
rate or false-detection budget, the DESIGN.md report on the frozen test split and the recent slice with the
trade-off curve on validation and test, the served scores behind it, MLflow tracking and the registered version)
is written once, here.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord, label_counts, require_trainable, scan_dataset
from datasets.splits import Split, product_splits, split_records
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig, load_product_config
from inspection.progress import console
from inspection.report import EvaluationReport
from inspection.settings import Settings
from models.artifacts import SERVED_SCORES_FILE
from models.checkpoint import ANOMALY_KIND, CLASSIFIER_KIND, bundle_target
from models.hybrid import HYBRID_KIND
from models.kinds import ModelKind
from models.registry import resolve_version
from training import distributed, tracking
from training.calibration import Calibration, calibrate_to_target
from training.data import resolve_color_mode, resolve_image_size
from training.evaluate import build_report, operating_curve_block, recent_slice_block
from training.kinds import kind_named
from training.kinds.base import Fitted, Scores, TrainingJob
from training.publish import publish_version
from training.tiles import TiledKind, resolve_geometry, resolved_tiling


@dataclass
class TrainOutcome:
    product: str
    version: int
    run_id: str
    report: dict[str, Any]
    calibration: Calibration
    artifacts: Path
    seconds: float
    # The test split's labels (1 = defective) and the served model's scores on it, for figures the report does
    # not carry (e.g. the benchmark's miss rate at a false-detection budget).
    test_labels: np.ndarray | None = None
    test_scores: np.ndarray | None = None
    test_records: list[ImageRecord] | None = None  # in the order of test_labels and test_scores


def select_device(requested: str) -> torch.device:
    """'auto' picks CUDA when present, so the same command uses a GPU where there is one; under torchrun each
    rank takes its own GPU."""
    if requested == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return distributed.local_device(torch.device(requested))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# `kind: auto` trains the hybrid below this many defective training images: in the few-shot benchmark (10 of
# them) the hybrid out-ranked the classifier on every product; with hundreds the classifier carries it
# (docs/decisions/0011-kind-auto-by-defect-count.md).
AUTO_HYBRID_BELOW_DEFECTS = 100


def resolve_kind(config: ProductConfig, records: list[ImageRecord], train: list[ImageRecord]) -> ModelKind:
    """The product's configured kind; a dataset without a single defect can only learn what good looks like, and
    `auto` is the hybrid when the training split holds few defects (`train`), else the classifier."""
    if not any(r.is_defect for r in records):
        return kind_named(ANOMALY_KIND)
    if config.kind == "auto":
        few = sum(r.is_defect for r in train) < AUTO_HYBRID_BELOW_DEFECTS
        return kind_named(HYBRID_KIND if few else CLASSIFIER_KIND)
    return kind_named(config.kind)


def print_run_header(job: TrainingJob, kind: ModelKind) -> None:
    """The line every training run starts with: product and kind, label counts, split sizes, input, device."""
    detail = kind.describe(job)
    console.print(
        f"[bold]{job.product}[/] ({kind.name}): {len(job.records)} images {label_counts(job.records)}; split "
        + ", ".join(f"{k} {len(v)}" for k, v in job.parts.items())
        + (f"; {detail}" if detail else "")
        + f"; {job.spec.color_mode} {job.spec.image_size}px on {job.device}"
    )


def run_params(job: TrainingJob, kind: ModelKind) -> dict[str, Any]:
    """The MLflow parameters of a run: what every kind records, then the kind's own schedule."""
    return {
        "product": job.product,
        "kind": kind.name,  # also when the config says classifier but the data holds no defects
        "n_images": len(job.records),
        "device": str(job.device),
        "color_mode": job.spec.color_mode,
        **{f"split_{k}": len(v) for k, v in job.parts.items()},
        "image_size": job.config.image_size,
        "seed": job.config.seed,
        job.config.target.key: job.config.target.value,
        **kind.params(job),
    }


def log_run_inputs(config: ProductConfig, parts: dict[Split, list[ImageRecord]]) -> None:
    """Save the resolved config and the split with the active run, so a version can be traced to its data."""
    tracking.log_json(config.model_dump(), "config/resolved_config.json")
    tracking.log_json({"splits": {k: [r.relpath for r in v] for k, v in parts.items()}}, "config/splits.json")


def labels_of(records: list[ImageRecord]) -> np.ndarray:
    return np.array([r.is_defect for r in records], dtype=np.int64)


def served_threshold_of(kind: ModelKind, bundle: Any) -> float | None:
    """The served threshold the bundle was calibrated to (its calibrated threshold mapped to served units), or
    None for a bundle that does not record its calibration."""
    calibration = bundle.info.get("calibration") or {}
    if calibration.get("threshold") is None:
        return None
    return float(kind.served_scores(bundle, np.array([float(calibration["threshold"])]))[0])


def kind_report(
    kind: ModelKind,
    bundle: Any,
    product: str,
    version: int | str | None,
    records: list[ImageRecord],
    scores: Scores,
    data_source: str,
    fitted: Fitted | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> EvaluationReport:
    """The DESIGN.md report of any kind on labeled records: rates at the bundle's threshold, the validation-chosen
    operating points, the trade-off curve in served units (with `validation`'s (labels, served scores) too when
    given), pixel metrics when the kind gives maps and the data has masks, and the kind's extras."""
    report = build_report(
        product,
        version,
        bundle.threshold,
        bundle_target(bundle),
        records,
        scores.predictions,
        bundle.defect_types,
        data_source=data_source,
        extra_thresholds=bundle.info.get("extra_thresholds"),
        typed=kind.typed,
        maps=scores.maps,
    )
    report.kind = kind.name
    served_threshold = served_threshold_of(kind, bundle)
    if served_threshold is not None:
        test = (labels_of(records), kind.served_scores(bundle, scores.calibration_units))
        report.operating_curve = operating_curve_block(served_threshold, test, validation)
    report.extras.update(kind.report_extras(bundle, records, scores, fitted))
    return report


def served_scores_evidence(
    threshold: float, validation: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """`evaluation/served_scores.json`: every validation and test part's label and served score, so a served
    threshold can be chosen and its cost measured later (`inspection models threshold`) without retraining."""
    return {
        "units": "served defect_probability",
        "threshold": float(threshold),
        **{
            name: {"labels": labels.astype(int).tolist(), "scores": scores.astype(float).tolist()}
            for name, (labels, scores) in (("validation", validation), ("test", test))
        },
    }


def prepare_job(
    settings: Settings,
    product: str,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> tuple[TrainingJob, ModelKind]:
    """The run's resolved config, records, frozen split, preprocessing and device, and the kind it trains."""
    overrides: dict[str, Any] = {"train": dict(train_overrides or {})}
    if epochs is not None:
        overrides["train"]["epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    config = load_product_config(settings.configs_dir, product, overrides)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    require_trainable(records, product)
    # Resolved once here, so the config saved with the run says which size "auto" became.
    config = config.model_copy(update={"image_size": resolve_image_size(records, config.image_size)})
    # Under torchrun rank 0 alone writes a new or extended splits.json; the other ranks take its assignment.
    assignment = product_splits(root, records, config.split) if distributed.is_main_process() else None
    assignment = distributed.broadcast_object(assignment)
    assert assignment is not None
    parts = split_records(records, assignment)
    assert isinstance(config.image_size, int)
    spec = PreprocessSpec(image_size=config.image_size, color_mode=resolve_color_mode(records, config.color_mode))
    geometry = resolve_geometry(config, records, spec.image_size)
    if geometry is not None:
        # The saved config says what `auto` became; the spec carries the geometry into the bundle and the export.
        config = config.model_copy(update=resolved_tiling(geometry))
        spec = replace(spec, tiling=geometry)
    device = select_device(settings.device)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    seed_everything(config.seed)
    job = TrainingJob(settings, product, config, records, parts, spec, device, resume)
    kind = resolve_kind(config, records, parts["train"])
    return job, kind if geometry is None else TiledKind(kind, geometry)


def train_share(
    settings: Settings,
    product: str,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> None:
    """A torchrun rank above 0: the same job and its share of the kind's data-parallel fit, silently. Rank 0
    (`train_product`) alone calibrates, evaluates, tracks in MLflow and registers the version."""
    console.quiet = True  # rank 0's log is the run's log; N interleaved copies of it would bury it
    job, kind = prepare_job(settings, product, epochs=epochs, seed=seed, resume=resume, train_overrides=train_overrides)
    kind.fit_share(job)


def train_product(
    settings: Settings,
    product: str,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Train, calibrate on validation, evaluate on the frozen test split, and register a new version (under
    torchrun: rank 0's part, while the other ranks run `train_share`).

    `train_overrides` replaces keys of the product's `train:` config for this run (the demo's short schedule);
    like every resolved setting it is saved with the run."""
    started = time.perf_counter()
    job, kind = prepare_job(settings, product, epochs=epochs, seed=seed, resume=resume, train_overrides=train_overrides)
    config, records, parts = job.config, job.records, job.parts
    print_run_header(job, kind)
    if detail := distributed.describe():
        console.print(detail)
    with tracking.training_run(settings, product, run_params(job, kind)) as run:
        log_run_inputs(config, parts)
        fitted = kind.fit(job)
        val_labels = labels_of(parts["val"])
        calibration = calibrate_to_target(val_labels, fitted.val_scores, config.target)
        console.print(f"threshold {calibration.threshold:.4f} ({kind.name} score): {calibration.note}")
        info = {
            "product": product,
            "kind": kind.name,
            "run_id": run.info.run_id,
            "calibration": calibration.__dict__,
            "extra_thresholds": kind.extra_thresholds(val_labels, fitted.val_scores),
            "label_counts": label_counts(records),
            "split_counts": {k: len(v) for k, v in parts.items()},
            **fitted.info,
        }
        bundle = kind.bundle(job, fitted, calibration.threshold, info)
        served_threshold = float(kind.served_scores(bundle, np.array([calibration.threshold]))[0])
        validation = (val_labels, kind.served_scores(bundle, fitted.val_scores))
        test = kind.score(bundle, parts["test"], "test")
        recent = kind.score(bundle, parts["recent"], "recent line data") if parts["recent"] else None
        served_test = (labels_of(parts["test"]), kind.served_scores(bundle, test.calibration_units))
        evidence = {SERVED_SCORES_FILE: served_scores_evidence(served_threshold, validation, served_test)}

        def make_report(version: int) -> EvaluationReport:
            report = kind_report(kind, bundle, product, version, parts["test"], test, "test split", fitted, validation)
            report.calibration = calibration.__dict__
            report.recent_line_data = recent_slice_block(
                parts["recent"],
                None if recent is None else recent.predictions,
                bundle.defect_types,
                bundle.threshold,
                typed=kind.typed,
            )
            report.training = {**fitted.training, "seconds": round(time.perf_counter() - started, 1)}
            return report

        tags = {
            "kind": kind.name,
            config.target.key: str(config.target.value),
            "threshold": f"{bundle.threshold:.6f}",
        }
        version, report = publish_version(
            settings, product, run, bundle, tags, parts["test"], test.predictions, make_report, evidence
        )
        fitted.cleanup()
    artifacts = resolve_version(settings, product, version).artifacts
    seconds = time.perf_counter() - started
    return TrainOutcome(
        product,
        version,
        run.info.run_id,
        report,
        calibration,
        artifacts,
        seconds,
        test_labels=labels_of(parts["test"]),
        test_scores=test.predictions.defect_probability,
        test_records=parts["test"],
    )
