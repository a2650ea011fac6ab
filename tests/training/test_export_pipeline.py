"""Export of the trained synthetic product: parity with PyTorch, INT8 gate, files attached to the version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets.layout import scan_dataset
from datasets.splits import product_splits, split_records
from inspection.imaging import read_image
from inspection.metrics import false_detection_rate, miss_rate
from inspection.product_config import load_product_config
from models.artifacts import FP32_FILE, INT8_FILE, ONNX_DIR, int8_served_scores_path, served_scores_path
from models.onnx_runtime import OnnxScorer, read_onnx_metadata
from models.registry import resolve_version
from models.serving_choice import champion_model, read_served_scores
from models.threshold_moves import ThresholdRequest, plan_threshold
from training.export_pipeline import Int8Options, export_product

pytestmark = pytest.mark.slow


def test_export_fp32_passes_parity_and_embeds_what_serving_needs(trained_product) -> None:
    settings, product = trained_product.settings, trained_product.product
    outcome = export_product(settings, product)
    assert outcome.parity.passed and outcome.parity.max_abs_diff <= 1e-4
    assert outcome.parity.n_images == 40  # every image of the frozen test split
    metadata = read_onnx_metadata(outcome.fp32_path)
    assert metadata["model_version"] == 1 and metadata["product"] == product
    assert metadata["defect_types"] == ["crack", "scratch", "spot", "stain"]
    assert metadata["threshold"] == pytest.approx(trained_product.outcome.calibration.threshold)
    assert metadata["preprocess"]["image_size"] == 128 and metadata["preprocess"]["color_mode"] == "gray"
    assert len(metadata["weights_sha256"]) == 64
    artifacts = resolve_version(settings, product, 1).artifacts / ONNX_DIR
    assert (artifacts / FP32_FILE).exists() and not list(artifacts.parent.glob(".export-*"))
    scorer = OnnxScorer(outcome.fp32_path)
    assert scorer.threshold == pytest.approx(metadata["threshold"])


def test_int8_is_refused_when_the_tolerance_is_impossible(trained_product) -> None:
    settings, product = trained_product.settings, trained_product.product
    outcome = export_product(settings, product, int8=True, int8_options=Int8Options(max_auroc_loss=-1.0))
    assert outcome.int8 is not None and not outcome.int8.accepted
    assert outcome.int8_path is None
    assert not (outcome.fp32_path.parent / INT8_FILE).exists()
    report = json.loads((outcome.fp32_path.parent / "export_report.json").read_text())
    assert report["int8"]["accepted"] is False


def test_int8_with_the_default_tolerance_is_judged_and_reported(trained_product) -> None:
    settings, product = trained_product.settings, trained_product.product
    outcome = export_product(settings, product, int8=True)
    decision = outcome.int8
    assert decision is not None
    assert outcome.sizes_mb["int8"] < outcome.sizes_mb["fp32"] / 2  # weights really are 8 bit
    if decision.accepted:
        assert outcome.int8_path is not None and outcome.int8_path.exists()
        assert decision.auroc_loss_ci95 is not None and decision.auroc_loss_ci95[1] <= 0.005
        assert decision.flip_fraction <= 0.01 and decision.mcnemar_p >= 0.05
    else:
        assert "refused" in decision.reason


def test_an_accepted_int8_is_served_at_the_threshold_its_gate_judged(trained_product) -> None:
    """Where INT8 passes, the server's model store picks the INT8 file, and that file's threshold is the one the
    gate measured INT8's verdicts at (calibrated on INT8's own validation scores), so the line runs at the miss
    and false-detection rates the export reported."""
    settings, product = trained_product.settings, trained_product.product
    # Loose enough that this tiny product's INT8 passes on any CPU: the point is what happens after a pass.
    lenient = Int8Options(max_auroc_loss=0.05, max_flip_fraction=0.5, alpha=1e-6)
    try:
        outcome = export_product(settings, product, int8=True, int8_options=lenient)
        decision = outcome.int8
        assert decision is not None and decision.accepted, decision and decision.reason
        assert outcome.int8_path is not None and outcome.int8_path.name == INT8_FILE
        served = champion_model(settings, product)
        assert served is not None and served.path == outcome.int8_path
        scorer = OnnxScorer(served.path)
        assert scorer.threshold == pytest.approx(decision.int8_threshold)
        fp32_threshold = trained_product.outcome.calibration.threshold  # the fp32 file keeps the training's
        assert read_onnx_metadata(outcome.fp32_path)["threshold"] == pytest.approx(fp32_threshold)

        config = load_product_config(settings.configs_dir, product)
        root = settings.dataset_dir(product)
        records = scan_dataset(root)
        test = split_records(records, product_splits(root, records, config.split))["test"]
        labels = [int(r.is_defect) for r in test]
        scores = scorer.score_images([read_image(r.path) for r in test])[0]
        assert miss_rate(labels, scores, scorer.threshold).rate == pytest.approx(decision.int8_miss_rate)
        assert false_detection_rate(labels, scores, scorer.threshold).rate == pytest.approx(
            decision.int8_false_detection_rate
        )

        # QA's threshold is chosen on the served file's own evidence: the INT8 file's scores, not training's.
        info = resolve_version(settings, product, outcome.version)
        evidence = read_served_scores(info)
        assert evidence is not None and evidence.calibrated_threshold == pytest.approx(decision.int8_threshold)
        assert evidence.test.labels.tolist() == labels
        np.testing.assert_allclose(evidence.test.scores, scores, atol=1e-6)
        fp32_evidence = json.loads(served_scores_path(info.artifacts).read_text())["validation"]["scores"]
        assert not np.allclose(evidence.validation.scores, fp32_evidence, atol=1e-6)  # INT8 moved them
        plan = plan_threshold(settings, product, ThresholdRequest(value=0.5), outcome.version)
        assert plan.test["new"] == evidence.test.point(0.5)
    finally:
        export_product(settings, product)  # the shared product goes back to serving fp32 for later tests
    info = resolve_version(settings, product, outcome.version)
    assert not int8_served_scores_path(info.artifacts).exists()  # its evidence went with the INT8 file
    fp32_scores = read_served_scores(info)
    training_threshold = json.loads(served_scores_path(info.artifacts).read_text())["threshold"]
    assert fp32_scores is not None and fp32_scores.calibrated_threshold == pytest.approx(training_threshold)
