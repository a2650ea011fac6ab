"""kind: anomaly end to end: train on good parts, calibrate, evaluate with pixel metrics, register, export, serve."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from datasets.importers.folder import import_folder
from datasets.layout import scan_dataset
from datasets.splits import load_or_create_splits, split_records
from datasets.synth import generate_synthetic_product
from inspection.errors import InspectionError
from inspection.imaging import read_image
from inspection.settings import Settings
from models.anomaly_export import SERVED_ANOMALY_MAP, onnx_served_outputs
from models.artifacts import MODEL_FILE
from models.checkpoint import AnomalyBundle
from models.onnx_runtime import OnnxScorer
from models.registry import resolve_version
from models.serving_choice import serving_file
from tests.conftest import make_configs_dir
from tests.training.curve_checks import (
    assert_curve_recomputes_from_scores,
    assert_onnx_serves_the_recorded_scores,
    assert_served_point_is_the_reports,
    recorded_scores,
)
from training.evaluate_product import evaluate_product
from training.export_pipeline import export_product
from training.kinds import load_bundle as load_any_bundle
from training.kinds.anomaly import score_records
from training.pipeline import TrainOutcome, train_product

PRODUCT = "widget"
BANK_SIZE = 1000
# As tests/models/test_anomaly.py: drawn at 256 px so 1-px scratches survive the resize to 128. 300 parts, so the
# training split holds ~136 goods: with ~90 the continuously varying weave leaves gaps and soft stains rank low.
ANOMALY_CONFIG = f"""
kind: anomaly
image_size: 128
color_mode: gray
anomaly:
  memory_bank_size: {BANK_SIZE}
"""


@dataclass
class Trained:
    settings: Settings
    outcome: TrainOutcome


@pytest.fixture(scope="module")
def synthetic_256(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anomaly-source") / PRODUCT
    generate_synthetic_product(root, n=300, seed=3, image_size=256, defect_fraction=0.3)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic_256: Path) -> Trained:
    base = tmp_path_factory.mktemp("anomaly-home")
    configs = make_configs_dir(base / "configs", {PRODUCT: ANOMALY_CONFIG})
    settings = Settings(home=base / "var", configs_dir=configs, device="cpu")
    import_folder(synthetic_256, settings.dataset_dir(PRODUCT), PRODUCT)
    return Trained(settings, train_product(settings, PRODUCT))


def test_trains_on_good_parts_and_finds_and_localizes_defects(trained: Trained) -> None:
    report = trained.outcome.report
    test = report["test"]
    assert report["kind"] == "anomaly"
    for key in ("n_good", "n_defect", "miss_rate", "miss_rate_ci95", "false_detection_rate", "auroc", "accuracy"):
        assert key in test
    assert set(test["per_defect_type"]) == {"crack", "scratch", "spot", "stain"}
    assert all(row["type_accuracy"] is None for row in test["per_defect_type"].values())  # it names no types
    assert test["auroc"] >= 0.95
    assert test["pixel_auroc"] >= 0.9
    assert test["pro"] is not None and 0 <= test["pro"] <= 1
    assert test["confusion_matrix"]["classes"][:2] == ["good", "anomaly"]
    assert report["calibration"]["method"] == "miss_rate"  # validation has defects
    assert report["anomaly"]["served_threshold"] == 0.5

    info = resolve_version(trained.settings, PRODUCT, trained.outcome.version)
    card = (info.artifacts / "model_card.md").read_text()
    assert "Distance threshold" in card and "served threshold is 0.5" in card
    bundle = load_any_bundle(info.artifacts / MODEL_FILE)
    assert isinstance(bundle, AnomalyBundle)
    assert bundle.threshold == pytest.approx(report["threshold"], abs=1e-5)
    assert 0 < bundle.model.memory_bank.shape[0] <= BANK_SIZE
    # Only the good images of the training split went into the bank, never its defects.
    root = trained.settings.dataset_dir(PRODUCT)
    records = scan_dataset(root)
    train = split_records(records, load_or_create_splits(root, records, 0.15, 0.2, 0))["train"]
    assert any(r.is_defect for r in train)
    assert bundle.info["n_train_good"] == sum(not r.is_defect for r in train)


def test_evaluate_reproduces_the_training_report_with_pixel_metrics(trained: Trained, tmp_path: Path) -> None:
    report, paths = evaluate_product(trained.settings, PRODUCT, out_dir=tmp_path)
    assert report["test"]["auroc"] == trained.outcome.report["test"]["auroc"]
    assert report["test"]["pixel_auroc"] == trained.outcome.report["test"]["pixel_auroc"]
    assert report["test"]["miss_rate"] == trained.outcome.report["test"]["miss_rate"]
    assert paths["report"].exists()


def test_export_is_served_by_the_classifier_scorer_with_the_same_verdicts(trained: Trained) -> None:
    settings = trained.settings
    with pytest.raises(InspectionError, match="INT8"):
        export_product(settings, PRODUCT, int8=True)
    outcome = export_product(settings, PRODUCT)
    assert outcome.parity.passed
    scorer = OnnxScorer(outcome.fp32_path)
    assert scorer.threshold == 0.5
    assert scorer.defect_types == ["anomaly"]
    assert scorer.metadata["anomaly"]["distance_threshold"] > 0

    info = resolve_version(settings, PRODUCT, outcome.version)
    bundle = load_any_bundle(info.artifacts / MODEL_FILE)
    assert isinstance(bundle, AnomalyBundle)
    records = scan_dataset(settings.dataset_dir(PRODUCT))[::10]
    images = [read_image(r.path) for r in records]
    probability, types = scorer.score_images(images, batch_size=4)
    torch_scores, _ = score_records(bundle.model, records, bundle.spec, "torch")
    assert types.shape == (len(images), 1) and np.all(types == 1)
    np.testing.assert_array_equal(probability >= 0.5, torch_scores >= bundle.threshold)
    anomaly_map = onnx_served_outputs(outcome.fp32_path, images[:2])[SERVED_ANOMALY_MAP]
    assert anomaly_map.shape == (2, 1, 128, 128)
    assert anomaly_map.min() >= 0 and anomaly_map.max() <= 1


def test_good_only_dataset_trains_the_anomaly_kind(tmp_path: Path, synthetic_256: Path) -> None:
    source = tmp_path / "only-good" / "good"
    source.mkdir(parents=True)
    for image in sorted((synthetic_256 / "good").iterdir())[:30]:
        shutil.copy(image, source / image.name)
    # Default kind (classifier): the missing defects alone choose the anomaly kind.
    configs = make_configs_dir(tmp_path / "configs", {"plain": "image_size: 64\nanomaly:\n  memory_bank_size: 200\n"})
    settings = Settings(home=tmp_path / "var", configs_dir=configs, device="cpu")
    assert import_folder(source.parent, settings.dataset_dir("plain"), "plain").counts == {"good": 30}
    outcome = train_product(settings, "plain")
    assert outcome.report["kind"] == "anomaly"
    assert outcome.calibration.method == "good_quantile"
    assert outcome.report["test"]["n_defect"] == 0
    bundle = load_any_bundle(outcome.artifacts / MODEL_FILE)
    assert isinstance(bundle, AnomalyBundle) and bundle.model.memory_bank.shape[0] <= 200


def test_the_curve_is_in_served_units_and_the_export_serves_its_scores(trained: Trained) -> None:
    """The curve is over what the server compares with its threshold, sigmoid((distance - threshold) / scale),
    which is 0.5 at the calibrated one."""
    report, settings = trained.outcome.report, trained.settings
    scores = recorded_scores(settings, PRODUCT, trained.outcome.version)
    assert report["operating_curve"]["threshold"] == 0.5
    assert_curve_recomputes_from_scores(report, scores)
    assert_served_point_is_the_reports(report)
    info = resolve_version(settings, PRODUCT, trained.outcome.version)
    onnx_path = serving_file(info.artifacts) or export_product(settings, PRODUCT).fp32_path
    assert_onnx_serves_the_recorded_scores(settings, PRODUCT, scores, onnx_path, atol=1e-3)
