"""The evaluation report of DESIGN.md: miss and false-detection rates with Wilson intervals, AUROC, accuracy,
per defect type and the confusion matrix, computed on images the model never saw; plus its two plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.layout import ImageRecord
from inspection.atomic import write_atomic_text
from inspection.imaging import read_image
from inspection.metrics import auroc, confusion_matrix, false_detection_rate, miss_rate
from inspection.names import GOOD_LABEL
from inspection.operating_curve import CalibrationTarget, operating_curve
from inspection.pixel_metrics import pixel_auroc, pro_score
from inspection.report import EvaluationReport, OperatingCurve, RatesBlock, RecentBlock
from training.plots import plot_confusion_matrix, plot_roc
from training.predict import Predictions


def predicted_labels(predictions: Predictions, defect_types: Sequence[str], threshold: float) -> list[str]:
    """'good' below the threshold, else the most probable defect type."""
    flagged = predictions.defect_probability >= threshold
    best_type = predictions.type_probabilities.argmax(axis=1)
    return [defect_types[t] if flag else GOOD_LABEL for flag, t in zip(flagged, best_type, strict=True)]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def evaluate_predictions(
    records: Sequence[ImageRecord],
    predictions: Predictions,
    defect_types: Sequence[str],
    threshold: float,
    typed: bool = True,
) -> RatesBlock:
    """The `test` block of the report for one labeled image set.

    `typed=False` for a model that names no defect types (anomaly): per-type type accuracy is then None."""
    labels = np.array([r.is_defect for r in records], dtype=np.int64)
    scores = predictions.defect_probability
    missed = miss_rate(labels, scores, threshold)
    flagged = false_detection_rate(labels, scores, threshold)
    predicted = predicted_labels(predictions, defect_types, threshold)
    truth = [r.label for r in records]
    # Classes include labels present only in the evaluated data (an external folder may hold a new defect type).
    classes = [GOOD_LABEL, *defect_types, *sorted({t for t in truth} - {GOOD_LABEL, *defect_types})]
    per_type = {}
    for defect in sorted({t for t in truth if t != GOOD_LABEL}):
        mask = np.array([t == defect for t in truth])
        estimate = miss_rate(np.ones(mask.sum(), dtype=np.int64), scores[mask], threshold)
        type_hits = [p == defect for p, keep in zip(predicted, mask, strict=True) if keep]
        per_type[defect] = {
            "n": int(mask.sum()),
            "n_missed": estimate.k,
            "miss_rate": _rounded(estimate.rate),
            "miss_rate_ci95": [_rounded(x) for x in estimate.ci95],
            "type_accuracy": _rounded(float(np.mean(type_hits))) if type_hits and typed else None,
        }
    binary_correct = (scores >= threshold) == labels.astype(bool)
    return RatesBlock.model_validate(
        {
            "n_good": int((labels == 0).sum()),
            "n_defect": int(labels.sum()),
            "miss_rate": _rounded(missed.rate),
            "miss_rate_ci95": [_rounded(x) for x in missed.ci95],
            "n_missed": missed.k,
            "false_detection_rate": _rounded(flagged.rate),
            "false_detection_rate_ci95": [_rounded(x) for x in flagged.ci95],
            "n_false_detections": flagged.k,
            "auroc": _rounded(auroc(labels, scores)),
            "accuracy": _rounded(float(binary_correct.mean())) if len(labels) else None,
            "per_defect_type": per_type,
            "confusion_matrix": {
                "classes": classes,
                "matrix": confusion_matrix(truth, predicted, classes).tolist(),
                "binary": {
                    "true_defect_flagged": int(((scores >= threshold) & (labels == 1)).sum()),
                    "true_defect_passed": missed.k,
                    "true_good_flagged": flagged.k,
                    "true_good_passed": int(((scores < threshold) & (labels == 0)).sum()),
                },
            },
        }
    )


def operating_points(
    records: Sequence[ImageRecord], predictions: Predictions, thresholds: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Test-split rates at each named threshold (every one chosen on validation, never on this data)."""
    labels = np.array([r.is_defect for r in records], dtype=np.int64)
    scores = predictions.defect_probability
    points = {}
    for name, threshold in thresholds.items():
        missed = miss_rate(labels, scores, threshold)
        flagged = false_detection_rate(labels, scores, threshold)
        points[name] = {
            "threshold": round(float(threshold), 6),
            "miss_rate": _rounded(missed.rate),
            "miss_rate_ci95": [_rounded(x) for x in missed.ci95],
            "false_detection_rate": _rounded(flagged.rate),
            "false_detection_rate_ci95": [_rounded(x) for x in flagged.ci95],
            "accuracy": _rounded(float(((scores >= threshold) == labels.astype(bool)).mean())) if len(labels) else None,
        }
    return points


def build_report(
    product: str,
    model_version: int | str | None,
    threshold: float,
    target: CalibrationTarget,
    records: Sequence[ImageRecord],
    predictions: Predictions,
    defect_types: Sequence[str],
    data_source: str,
    extra_thresholds: dict[str, float] | None = None,
    typed: bool = True,
    maps: np.ndarray | None = None,
) -> EvaluationReport:
    """The full report object of DESIGN.md; `operating_points` adds the same data at other validation-chosen
    thresholds (the serving threshold is always the one in `threshold`); with anomaly `maps` (N, S, S) and
    masks in the data, the test block gets pixel AUROC and PRO."""
    thresholds = {target.key: threshold, **(extra_thresholds or {})}
    test = evaluate_predictions(records, predictions, defect_types, threshold, typed)
    pixels = pixel_metrics(records, maps) if maps is not None else None
    if pixels is not None:
        test = test.model_copy(update=pixels)
    return EvaluationReport.model_validate(
        {
            "product": product,
            "model_version": model_version,
            "threshold": round(float(threshold), 6),
            **target.fields(),
            "data": data_source,
            "test": test,
            "operating_points": operating_points(records, predictions, thresholds),
        }
    )


def operating_curve_block(
    threshold: float,
    test: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> OperatingCurve:
    """The report's `operating_curve`: (labels, served scores) of the test split (and of validation, in training)
    as thinned curves that always hold the point at the served `threshold`."""
    return OperatingCurve.model_validate(
        {
            "threshold": float(threshold),
            "test": operating_curve(*test, keep=[threshold]),
            "validation": None if validation is None else operating_curve(*validation, keep=[threshold]),
        }
    )


RECENT_SLICE_NOTE = "QA-reviewed line frames held out of training (the recent slice of splits.json)"


def recent_slice_block(
    records: Sequence[ImageRecord],
    predictions: Predictions | None,
    defect_types: Sequence[str],
    threshold: float,
    typed: bool = True,
) -> RecentBlock | None:
    """The report's `recent_line_data` block: the `test` block's figures on the recent slice, None when empty.

    Reported beside the frozen test split, never merged into it, so versions stay comparable on the same test
    images while the recent slice shows how a model does on what the line produces now."""
    if not records or predictions is None:
        return None
    block = evaluate_predictions(records, predictions, defect_types, threshold, typed)
    return RecentBlock.model_validate({"data": RECENT_SLICE_NOTE, **block.model_dump()})


def mask_for(record: ImageRecord, size: int) -> np.ndarray | None:
    """The record's ground-truth mask at the map size (good parts: all zero; a defect without a mask: None)."""
    if not record.is_defect:
        return np.zeros((size, size), np.uint8)
    if record.mask is None:
        return None
    mask = read_image(record.mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def pixel_metrics(records: Sequence[ImageRecord], maps: np.ndarray) -> dict[str, Any] | None:
    """Pixel AUROC and PRO of (N, S, S) anomaly maps against the masks; None when no image has a mask.

    Defective images without a mask are left out (where the defect is is unknown); good ones count as all-zero.
    """
    if not any(r.mask is not None for r in records):
        return None
    size = int(maps.shape[-1])
    masks, kept = [], []
    for record, anomaly_map in zip(records, maps, strict=True):
        mask = mask_for(record, size)
        if mask is not None:
            masks.append(mask)
            kept.append(anomaly_map)
    return {
        "pixel_auroc": _rounded(pixel_auroc(masks, kept)),
        "pro": _rounded(pro_score(masks, kept)),
        "n_pixel_images": len(masks),
    }


def write_report(
    report: EvaluationReport, records: Sequence[ImageRecord], predictions: Predictions, out_dir: Path
) -> dict[str, Path]:
    """Write report.json, roc.png and confusion_matrix.png into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.array([r.is_defect for r in records], dtype=np.int64)
    title = f"{report.product} v{report.model_version} on {report.data}"
    paths = {"report": out_dir / "report.json"}
    write_atomic_text(paths["report"], json.dumps(report.to_json(), indent=2))
    if len(set(labels.tolist())) == 2:
        paths["roc"] = plot_roc(labels, predictions.defect_probability, report.threshold, out_dir / "roc.png", title)
    matrix = np.array(report.test.confusion_matrix.matrix)
    classes = report.test.confusion_matrix.classes
    paths["confusion"] = plot_confusion_matrix(matrix, classes, out_dir / "confusion_matrix.png", title)
    return paths
