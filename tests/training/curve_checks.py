"""Checks every kind's training run must pass: the report's curve is a recomputation of the recorded served
scores, and those are what the exported model serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datasets.layout import ImageRecord, scan_dataset
from datasets.splits import product_splits, split_records
from inspection.imaging import read_image
from inspection.metrics import false_detection_rate, miss_rate
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.artifacts import served_scores_path
from models.onnx_runtime import OnnxScorer
from models.registry import resolve_version


def frozen_test_records(settings: Settings, product: str) -> list[ImageRecord]:
    """The product's frozen test split, in the order training scored it."""
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    config = load_product_config(settings.configs_dir, product)
    return split_records(records, product_splits(root, records, config.split))["test"]


def recorded_scores(settings: Settings, product: str, version: int) -> dict[str, Any]:
    """The version's evaluation/served_scores.json."""
    data: dict[str, Any] = json.loads(
        served_scores_path(resolve_version(settings, product, version).artifacts).read_text()
    )
    return data


def assert_curve_recomputes_from_scores(report: dict[str, Any], scores: dict[str, Any]) -> None:
    """Every point of both curves is what counting the recorded scores at its threshold gives, and each curve
    holds the served threshold's point."""
    curve = report["operating_curve"]
    assert curve["threshold"] == scores["threshold"]
    for split in ("validation", "test"):
        labels = np.asarray(scores[split]["labels"])
        values = np.asarray(scores[split]["scores"])
        points = curve[split]
        assert points and any(p["threshold"] == curve["threshold"] for p in points)
        for point in points:
            missed = miss_rate(labels, values, point["threshold"])
            flagged = false_detection_rate(labels, values, point["threshold"])
            assert (point["n_missed"], point["n_defect"]) == (missed.k, missed.n)
            assert (point["n_false_detections"], point["n_good"]) == (flagged.k, flagged.n)
            assert point["miss_rate"] == pytest.approx(missed.rate, abs=1e-6)
            assert point["false_detection_rate"] == pytest.approx(flagged.rate, abs=1e-6)
            assert point["miss_rate_ci95"] == pytest.approx(list(missed.ci95), abs=1e-6)
            assert point["false_detection_rate_ci95"] == pytest.approx(list(flagged.ci95), abs=1e-6)
        # A small split keeps every distinct verdict set (plus the served threshold when it is not a gap's middle).
        assert len(points) in (np.unique(values).size + 1, np.unique(values).size + 2)
        misses = [p["n_missed"] for p in points]
        assert misses == sorted(misses)


def assert_served_point_is_the_reports(report: dict[str, Any]) -> None:
    """The test curve's point at the served threshold has the report's test rates (one verdict rule)."""
    curve = report["operating_curve"]
    (point,) = [p for p in curve["test"] if p["threshold"] == curve["threshold"]]
    test = report["test"]
    assert (point["n_missed"], point["n_false_detections"]) == (test["n_missed"], test["n_false_detections"])
    assert (point["n_defect"], point["n_good"]) == (test["n_defect"], test["n_good"])


def assert_onnx_serves_the_recorded_scores(
    settings: Settings, product: str, scores: dict[str, Any], onnx_path: Path, atol: float
) -> None:
    """The exported model's defect_probability on the test split is the recorded served score."""
    scorer = OnnxScorer(onnx_path)
    images = [read_image(r.path) for r in frozen_test_records(settings, product)]
    served, _ = scorer.score_images(images, batch_size=8)
    np.testing.assert_allclose(served, scores["test"]["scores"], atol=atol)
    assert scorer.threshold == pytest.approx(scores["threshold"])
