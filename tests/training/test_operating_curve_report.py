"""The trade-off curve a training run reports, and a false-detection budget as the calibration target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from datasets.importers.folder import import_folder
from inspection.settings import Settings
from models.registry import mlflow_client, resolve_version
from tests.conftest import TINY_CONFIG, TINY_PRODUCT, make_configs_dir
from tests.training.curve_checks import (
    assert_curve_recomputes_from_scores,
    assert_onnx_serves_the_recorded_scores,
    assert_served_point_is_the_reports,
    recorded_scores,
)
from training.evaluate_product import evaluate_product
from training.pipeline import TrainOutcome, train_product

pytestmark = pytest.mark.slow

BUDGET = 0.1


def test_the_report_curve_matches_a_recomputation_from_the_recorded_scores(trained_product) -> None:
    report, outcome = trained_product.outcome.report, trained_product.outcome
    scores = recorded_scores(trained_product.settings, trained_product.product, outcome.version)
    assert_curve_recomputes_from_scores(report, scores)
    assert_served_point_is_the_reports(report)
    curve = report["operating_curve"]
    # A classifier serves the probability it was calibrated on: the served threshold is the calibrated one.
    assert curve["threshold"] == pytest.approx(outcome.calibration.threshold)
    (val_point,) = [p for p in curve["validation"] if p["threshold"] == curve["threshold"]]
    assert val_point["miss_rate"] == pytest.approx(outcome.calibration.val_miss_rate)
    assert val_point["false_detection_rate"] == pytest.approx(outcome.calibration.val_false_detection_rate)
    assert (val_point["n_defect"], val_point["n_good"]) == (outcome.calibration.n_defect, outcome.calibration.n_good)


def test_evaluate_and_the_export_reproduce_the_recorded_test_scores(trained_product, tmp_path: Path) -> None:
    from training.export_pipeline import export_product

    settings, product = trained_product.settings, trained_product.product
    report, _ = evaluate_product(settings, product, out_dir=tmp_path)
    assert report["operating_curve"]["test"] == trained_product.outcome.report["operating_curve"]["test"]
    assert report["operating_curve"]["validation"] is None  # only training sees the validation scores
    outcome = export_product(settings, product)
    scores = recorded_scores(settings, product, outcome.version)
    assert_onnx_serves_the_recorded_scores(settings, product, scores, outcome.fp32_path, atol=1e-4)


@dataclass
class Trained:
    settings: Settings
    outcome: TrainOutcome


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory, synthetic_source: Path) -> Trained:
    """The synthetic product trained (short schedule) with a false-detection budget instead of a miss rate."""
    base = tmp_path_factory.mktemp("budget")
    config = TINY_CONFIG.replace("epochs: 3", "epochs: 1") + f"target_false_detection_rate: {BUDGET}\n"
    configs = make_configs_dir(base / "configs", {TINY_PRODUCT: config})
    settings = Settings(home=base / "var", configs_dir=configs, device="cpu")
    import_folder(synthetic_source, settings.dataset_dir(TINY_PRODUCT), TINY_PRODUCT)
    return Trained(settings, train_product(settings, TINY_PRODUCT))


def test_a_false_detection_budget_calibrates_to_the_budget(budgeted: Trained) -> None:
    outcome, report = budgeted.outcome, budgeted.outcome.report
    calibration = outcome.calibration
    assert calibration.method == "false_detection_rate"
    assert (calibration.target_miss_rate, calibration.target_false_detection_rate) == (None, BUDGET)
    assert calibration.val_false_detection_rate is not None and calibration.val_false_detection_rate <= BUDGET
    # The lowest such threshold: every lower point of the (unthinned) validation curve is over the budget.
    curve = report["operating_curve"]
    lower = [p for p in curve["validation"] if p["threshold"] < curve["threshold"]]
    assert lower and all(p["false_detection_rate"] > BUDGET for p in lower)
    # The report, the operating points, the registry and the model card say which target it was.
    assert (report["target_miss_rate"], report["target_false_detection_rate"]) == (None, BUDGET)
    assert set(report["operating_points"]) == {"target_false_detection_rate", "max_validation_accuracy"}
    info = resolve_version(budgeted.settings, TINY_PRODUCT, outcome.version)
    assert info.tags["target_false_detection_rate"] == str(BUDGET) and "target_miss_rate" not in info.tags
    run = mlflow_client(budgeted.settings).get_run(outcome.run_id)
    assert run.data.params["target_false_detection_rate"] == str(BUDGET)
    card = (info.artifacts / "model_card.md").read_text()
    assert "calibrated on the validation split for a false-detection budget of 10.00%" in card
    scores = recorded_scores(budgeted.settings, TINY_PRODUCT, outcome.version)
    assert_curve_recomputes_from_scores(report, scores)
