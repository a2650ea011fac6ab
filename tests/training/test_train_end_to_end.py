"""A tiny end-to-end train on a synthetic product: learns, calibrates, reports, tracks, registers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.layout import scan_dataset
from datasets.splits import SPLITS_FILE
from inspection.imaging import read_image
from inspection.preprocessing import preprocess
from models.artifacts import MODEL_FILE
from models.classifier import MAP_FLOOR_QUANTILE
from models.registry import champion, list_versions, mlflow_client
from training.evaluate_product import evaluate_product
from training.kinds import load_bundle

pytestmark = pytest.mark.slow

REPORT_KEYS = {"product", "model_version", "threshold", "target_miss_rate", "test"}
TEST_KEYS = {
    "n_good",
    "n_defect",
    "miss_rate",
    "miss_rate_ci95",
    "false_detection_rate",
    "false_detection_rate_ci95",
    "auroc",
    "accuracy",
    "per_defect_type",
    "confusion_matrix",
}


def test_tiny_train_reaches_auroc_on_held_out_test_split(trained_product) -> None:
    report = trained_product.outcome.report
    assert set(report) >= REPORT_KEYS and set(report["test"]) >= TEST_KEYS
    test = report["test"]
    assert test["auroc"] >= 0.9, test
    assert test["n_good"] + test["n_defect"] == 40  # 20% of 200 images, never seen in training
    assert set(test["per_defect_type"]) == {"crack", "scratch", "spot", "stain"}
    low, high = test["miss_rate_ci95"]
    assert 0 <= low <= test["miss_rate"] <= high <= 1


def test_threshold_meets_the_target_on_validation(trained_product) -> None:
    calibration = trained_product.outcome.calibration
    assert calibration.method == "miss_rate"
    assert calibration.val_miss_rate <= calibration.target_miss_rate


def test_first_version_is_registered_as_champion_with_its_artifacts(trained_product) -> None:
    settings, product = trained_product.settings, trained_product.product
    versions = list_versions(settings, product)
    assert [v.version for v in versions] == [1]
    served = champion(settings, product)
    assert served is not None and served.version == 1
    bundle = load_bundle(served.artifacts / MODEL_FILE)
    assert bundle.defect_types == ["crack", "scratch", "spot", "stain"]
    assert bundle.threshold == pytest.approx(trained_product.outcome.calibration.threshold)
    assert bundle.spec.color_mode == "gray" and bundle.spec.image_size == 128
    saved = json.loads((served.artifacts / "evaluation" / "report.json").read_text())
    assert saved == trained_product.outcome.report
    assert (served.artifacts / "evaluation" / "roc.png").stat().st_size > 5000
    card = (served.artifacts / "model_card.md").read_text()
    assert "## Known limits" in card
    # Each defect type has 3 test images here, far too few to trust its miss rate: the card must say so.
    assert "too few" in card and "crack" in card


def test_mlflow_run_holds_params_epoch_metrics_and_config(trained_product) -> None:
    client = mlflow_client(trained_product.settings)
    run = client.get_run(trained_product.outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["image_size"] == "128"
    history = client.get_metric_history(run.info.run_id, "val_auroc")
    assert len(history) >= 2  # the probe plus at least one fine-tune epoch
    assert "test_miss_rate" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert "config/resolved_config.json" in artifacts


def test_frozen_split_is_written_and_test_images_were_not_trained_on(trained_product) -> None:
    root = trained_product.settings.dataset_dir(trained_product.product)
    assignment = json.loads((root / SPLITS_FILE).read_text())["assignment"]
    assert set(assignment) == {r.relpath for r in scan_dataset(root)}
    client = mlflow_client(trained_product.settings)
    local = client.download_artifacts(trained_product.outcome.run_id, "config/splits.json")
    logged = json.loads(Path(local).read_text())["splits"]
    assert not set(logged["train"]) & set(logged["test"])
    assert {p for side in logged.values() for p in side} == set(assignment)


def _split_images(trained_product, side: str) -> tuple[torch.Tensor, np.ndarray]:
    """The preprocessed images of one side of the frozen split, and their labels (1 = defective)."""
    root = trained_product.settings.dataset_dir(trained_product.product)
    assignment = json.loads((root / SPLITS_FILE).read_text())["assignment"]
    records = [r for r in scan_dataset(root) if assignment[r.relpath] == side]
    spec = load_bundle(champion(trained_product.settings, trained_product.product).artifacts / MODEL_FILE).spec
    images = torch.from_numpy(np.stack([preprocess(read_image(r.path), spec) for r in records]))
    return images, np.array([r.is_defect for r in records], dtype=np.int64)


def test_the_map_floor_comes_from_the_validation_defects_and_defects_keep_full_contrast(trained_product) -> None:
    model = load_bundle(champion(trained_product.settings, trained_product.product).artifacts / MODEL_FILE).model
    val_images, val_labels = _split_images(trained_product, "val")
    with torch.no_grad():
        peaks = model.activation_peaks(model.trunk(val_images)).numpy()
    # Training took the peaks from its float16 feature cache: the same quantile, to a rounding.
    expected = np.quantile(peaks[val_labels == 1], MAP_FLOOR_QUANTILE)
    assert model.map_floor == pytest.approx(expected, rel=2e-2) and model.map_floor > 0
    test_images, test_labels = _split_images(trained_product, "test")
    with torch.no_grad():
        brightest = model(test_images[test_labels == 1]).anomaly_map.amax(dim=(1, 2, 3)).numpy()
    # The floor sits under nearly every defect's peak, so defects keep their full-contrast maps; a floor at, say,
    # the defects' median peak would dim half of them.
    assert np.mean(brightest >= 0.99) >= 0.8, np.sort(brightest)


def test_evaluate_reproduces_the_training_report(trained_product, tmp_path) -> None:
    report, paths = evaluate_product(trained_product.settings, trained_product.product, out_dir=tmp_path)
    trained = trained_product.outcome.report
    assert report["test"]["auroc"] == pytest.approx(trained["test"]["auroc"], abs=1e-6)
    assert report["test"]["confusion_matrix"] == trained["test"]["confusion_matrix"]
    assert {"report", "roc", "confusion"} <= set(paths)


def test_evaluate_on_external_folder(trained_product, synthetic_source, tmp_path) -> None:
    report, _ = evaluate_product(
        trained_product.settings, trained_product.product, data_dir=synthetic_source, out_dir=tmp_path
    )
    assert report["data"] == str(synthetic_source)
    assert report["test"]["n_good"] + report["test"]["n_defect"] == 200
    assert report["test"]["auroc"] >= 0.9


def test_operating_points_report_the_serving_threshold_and_the_balanced_one(trained_product) -> None:
    report = trained_product.outcome.report
    points = report["operating_points"]
    assert set(points) == {"target_miss_rate", "max_validation_accuracy"}
    serving = points["target_miss_rate"]
    assert serving["threshold"] == report["threshold"]
    assert serving["miss_rate"] == report["test"]["miss_rate"]
    assert serving["accuracy"] == report["test"]["accuracy"]
    balanced = points["max_validation_accuracy"]
    assert 0 <= balanced["accuracy"] <= 1
