"""`inspection export P [--version V] [--int8]`: export, check, compare, and attach to the registered version.

Export means export, check, compare: ONNX checker, ONNX Runtime graph optimization, a parity gate against the
PyTorch model on real decoded test images, and (with --int8) static quantization accepted only if it keeps the
miss and false-detection rates. The files land in the version's MLflow artifacts under `onnx/`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from datasets.layout import ImageRecord, label_counts, scan_dataset
from datasets.splits import Split, product_splits, split_records
from inspection.atomic import write_atomic_text
from inspection.errors import InspectionError
from inspection.imaging import read_image
from inspection.product_config import load_product_config
from inspection.progress import console, progress_task
from inspection.settings import Settings
from models.anomaly_export import ServedAnomalyParity
from models.artifacts import (
    EXPORT_REPORT_FILE,
    FP32_FILE,
    INT8_FILE,
    INT8_SERVED_SCORES_FILE,
    ONNX_DIR,
    bundle_path,
    onnx_dir,
)
from models.checkpoint import ModelBundle
from models.onnx_export import update_onnx_metadata, weights_sha256
from models.onnx_parity import ParityResult
from models.onnx_runtime import OnnxScorer
from models.quantize import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_CALIBRATION_METHOD,
    CalibrationName,
    calibration_indices,
    quantize_int8,
)
from models.registry import mlflow_client, publish_artifacts, resolve_version
from models.threshold_moves import follow_the_served_file
from training.int8_gate import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_AUROC_LOSS,
    DEFAULT_MAX_FLIP_FRACTION,
    Int8Decision,
    int8_gate,
)
from training.kinds import kind_of, load_bundle
from training.pipeline import served_scores_evidence


@dataclass(frozen=True)
class Int8Options:
    """How the INT8 candidate is calibrated and judged (training.int8_gate)."""

    max_auroc_loss: float = DEFAULT_MAX_AUROC_LOSS
    calibration: CalibrationName = DEFAULT_CALIBRATION_METHOD
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    max_flip_fraction: float = DEFAULT_MAX_FLIP_FRACTION
    alpha: float = DEFAULT_ALPHA


@dataclass
class ExportOutcome:
    product: str
    version: int
    fp32_path: Path
    int8_path: Path | None
    parity: ParityResult | ServedAnomalyParity  # the kind's parity check
    int8: Int8Decision | None
    sizes_mb: dict[str, float]
    latency_ms_bs1: dict[str, float]
    threshold_note: str | None = None  # what became of QA's served threshold on the file that now serves

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp32_path"], data["int8_path"] = str(self.fp32_path), self.int8_path and str(self.int8_path)
        data["int8"] = None if self.int8 is None else self.int8.to_dict()
        del data["threshold_note"]  # decided after the report is published; the registry's threshold log keeps it
        return data


def _decode(records: list[ImageRecord], what: str) -> list[np.ndarray]:
    with progress_task(f"decoding {what}", len(records)) as advance:
        images = []
        for record in records:
            images.append(read_image(record.path))
            advance(1)
    return images


def _calibration_sample(records: list[ImageRecord], seed: int, count: int) -> list[ImageRecord]:
    # Seeded and spread over the labels in proportion, so rare defect types shape the activation ranges too.
    return [records[i] for i in calibration_indices([r.label for r in records], count, seed)]


def _latency_ms(scorer: OnnxScorer, images: list[np.ndarray], repeats: int = 30) -> float:
    sample = images[: min(len(images), repeats)]
    scorer.score_images(sample[:2])  # warm-up: first runs allocate
    started = time.perf_counter()
    scorer.score_images(sample)
    return 1000 * (time.perf_counter() - started) / len(sample)


def _int8_candidate(
    raw: Path,
    staging: Path,
    fp32: OnnxScorer,
    bundle: ModelBundle,
    parts: dict[Split, list[ImageRecord]],
    test_images: list[np.ndarray],
    seed: int,
    options: Int8Options,
) -> tuple[Path, OnnxScorer, Int8Decision]:
    sample = _calibration_sample(parts["train"], seed, options.calibration_images)
    calibration = _decode(sample, f"calibration images ({options.calibration})")
    candidate = quantize_int8(raw, staging / INT8_FILE, calibration, bundle.spec, method=options.calibration)
    int8 = OnnxScorer(candidate)
    val_images = _decode(parts["val"], "validation split")
    val_labels = np.array([r.is_defect for r in parts["val"]], dtype=np.int64)
    test_labels = np.array([r.is_defect for r in parts["test"]], dtype=np.int64)
    val_int8, test_int8 = int8.score_images(val_images)[0], int8.score_images(test_images)[0]
    decision = int8_gate(
        val_labels,
        fp32.score_images(val_images)[0],
        val_int8,
        test_labels,
        fp32.score_images(test_images)[0],
        test_int8,
        bundle.target_miss_rate,
        target_false_detection_rate=bundle.target_false_detection_rate,
        max_auroc_loss=options.max_auroc_loss,
        max_flip_fraction=options.max_flip_fraction,
        alpha=options.alpha,
        seed=seed,
    )
    if decision.accepted:  # the file's own evidence, for choosing its served threshold later (served_threshold)
        evidence = served_scores_evidence(decision.int8_threshold, (val_labels, val_int8), (test_labels, test_int8))
        write_atomic_text(staging / INT8_SERVED_SCORES_FILE, json.dumps(evidence))
    return candidate, int8, decision


def _metadata(product: str, version: int, bundle: Any, records: list[ImageRecord], parts: dict) -> dict:
    return {
        "product": product,
        "model_version": version,
        "defect_types": bundle.defect_types,
        "threshold": bundle.threshold,  # an anomaly export replaces it with 0.5 (its probability scale)
        "target_miss_rate": bundle.target_miss_rate,
        "target_false_detection_rate": bundle.target_false_detection_rate,
        "training_data": {"label_counts": label_counts(records), "split_counts": {k: len(v) for k, v in parts.items()}},
        "weights_sha256": weights_sha256(bundle.model),
        "onnxruntime_version": onnxruntime.__version__,
    }


def export_product(
    settings: Settings,
    product: str,
    *,
    version: int | None = None,
    int8: bool = False,
    int8_options: Int8Options | None = None,
) -> ExportOutcome:
    """Export a registered version to ONNX (and INT8 if asked and accepted); attach files to the version."""
    info = resolve_version(settings, product, version)
    bundle = load_bundle(bundle_path(info.artifacts))
    kind = kind_of(bundle)
    if int8 and not kind.supports_int8:
        raise InspectionError(
            f"{product} v{info.version} is a {kind.name} model: INT8 export is not supported for it (its accuracy "
            "has not been measured); export it without --int8"
        )
    config = load_product_config(settings.configs_dir, product)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    split = product_splits(root, records, config.split)
    parts = split_records(records, split)
    out_dir = onnx_dir(info.artifacts)
    # Everything is built in a staging folder and moved into place only after every gate passed, so a failed
    # export never leaves a model file that serving could pick up.
    staging = Path(tempfile.mkdtemp(dir=info.artifacts, prefix=".export-"))
    try:
        test_images = _decode(parts["test"], "test split")
        metadata = _metadata(product, info.version, bundle, records, parts)
        exported = kind.export(bundle, staging, metadata, test_images)
        raw, fp32, parity = exported.raw, exported.fp32, exported.parity
        sizes = {"fp32": fp32.stat().st_size / 1e6}
        fp32_scorer = OnnxScorer(fp32)  # one session per model for every timing and scoring pass below
        latency = {"fp32": _latency_ms(fp32_scorer, test_images)}
        decision, int8_path = None, None
        if int8:
            candidate, int8_scorer, decision = _int8_candidate(
                raw, staging, fp32_scorer, bundle, parts, test_images, config.seed, int8_options or Int8Options()
            )
            console.print(decision.reason)
            sizes["int8"] = candidate.stat().st_size / 1e6
            latency["int8"] = _latency_ms(int8_scorer, test_images)
            if decision.accepted:
                # The gate judged INT8's verdicts at the threshold calibrated on its own validation scores (its
                # scores are shifted a little from fp32's); the quantized file still carries fp32's. Served as it
                # stands, the line would run at a point nobody measured.
                int8_path = update_onnx_metadata(candidate, {"threshold": decision.int8_threshold})
        out_dir.mkdir(exist_ok=True)
        for stale in (FP32_FILE, INT8_FILE, INT8_SERVED_SCORES_FILE):
            (out_dir / stale).unlink(missing_ok=True)
        fp32 = fp32.replace(out_dir / FP32_FILE)
        if int8_path:  # its scores first: once the INT8 file is in place it serves, and its evidence is read
            (staging / INT8_SERVED_SCORES_FILE).replace(out_dir / INT8_SERVED_SCORES_FILE)
            int8_path = int8_path.replace(out_dir / INT8_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    outcome = ExportOutcome(product, info.version, fp32, int8_path, parity, decision, sizes, latency)
    write_atomic_text(out_dir / EXPORT_REPORT_FILE, json.dumps(outcome.summary(), indent=2, default=str))
    publish_artifacts(settings, info, ONNX_DIR)  # uploaded to the MLflow server, if any, for every replica
    _tag_version(settings, product, info.version, outcome)
    outcome.threshold_note = follow_the_served_file(settings, product, info.version, "int8" if int8_path else "fp32")
    return outcome


def _tag_version(settings: Settings, product: str, version: int, outcome: ExportOutcome) -> None:
    client = mlflow_client(settings)
    tags = {
        "onnx_parity_max_abs_diff": f"{outcome.parity.max_abs_diff:.3e}",
        "onnx_serving_precision": "int8" if outcome.int8_path else "fp32",
    }
    if outcome.int8 is not None:
        tags["int8_accepted"] = str(outcome.int8.accepted).lower()
        tags["int8_reason"] = outcome.int8.reason
    for key, value in tags.items():
        client.set_model_version_tag(product, str(version), key, value)
