"""kind: hybrid end to end: classifier + PatchCore fused on validation, evaluated, registered, exported, scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from datasets.importers.folder import import_folder
from datasets.layout import scan_dataset
from datasets.synth import DEFECT_TYPES, generate_synthetic_product
from inspection.errors import InspectionError
from inspection.imaging import read_image
from inspection.preprocessing import preprocess
from inspection.settings import Settings
from models.artifacts import MODEL_FILE
from models.checkpoint import HybridBundle
from models.hybrid import HybridOutput
from models.hybrid_export import HYBRID_PARITY_TOLERANCE
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
from training.kinds.hybrid import classifier_logits, hybrid_outputs
from training.pipeline import TrainOutcome, train_product

PRODUCT = "gadget"
# A short classifier schedule and a small bank: the test checks the plumbing and the fusion, not peak accuracy.
HYBRID_CONFIG = """
kind: hybrid
image_size: 128
color_mode: gray
train:
  epochs: 2
  augmented_views: 1
  probe_steps: 100
anomaly:
  memory_bank_size: 500
"""


@dataclass
class Trained:
    settings: Settings
    outcome: TrainOutcome


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    base = tmp_path_factory.mktemp("hybrid-home")
    source = base / "source"
    # Rare defects (15%), drawn at 256 px so thin scratches survive the resize, as in the anomaly tests.
    generate_synthetic_product(source, n=240, seed=4, image_size=256, defect_fraction=0.15)
    configs = make_configs_dir(base / "configs", {PRODUCT: HYBRID_CONFIG})
    settings = Settings(home=base / "var", configs_dir=configs, device="cpu")
    import_folder(source, settings.dataset_dir(PRODUCT), PRODUCT)
    return Trained(settings, train_product(settings, PRODUCT))


def test_report_compares_the_fused_model_with_each_component(trained: Trained) -> None:
    report = trained.outcome.report
    assert report["kind"] == "hybrid"
    assert report["threshold"] == 0.5  # served scale: sigmoid(fused - calibrated threshold)
    assert set(report["components"]) == {"classifier", "anomaly", "hybrid"}
    for figures in report["components"].values():
        assert 0.5 <= figures["auroc"] <= 1
        assert 0 <= figures["miss_rate_at_10pct_fdr"] <= 1
    assert report["components"]["hybrid"]["auroc"] == pytest.approx(report["test"]["auroc"], abs=1e-6)
    assert report["components"]["hybrid"]["auroc"] >= 0.9
    fusion = report["hybrid"]["fusion"]
    assert 0 < fusion["classifier_weight"] < 1
    assert fusion["classifier_scale"] > 0 and fusion["anomaly_scale"] > 0
    assert report["hybrid"]["validation_defects"] >= 1
    assert report["test"]["confusion_matrix"]["classes"] == ["good", *sorted(DEFECT_TYPES), "anomaly"]
    assert report["test"]["pixel_auroc"] is not None
    assert report["recent_line_data"] is None  # no reviewed frames in this dataset


def test_bundle_round_trips_with_its_fusion(trained: Trained) -> None:
    info = resolve_version(trained.settings, PRODUCT, trained.outcome.version)
    bundle = load_any_bundle(info.artifacts / MODEL_FILE)
    assert isinstance(bundle, HybridBundle)
    assert bundle.defect_types == [*sorted(DEFECT_TYPES), "anomaly"]
    assert bundle.model.fusion.to_dict() == pytest.approx(trained.outcome.report["hybrid"]["fusion"], abs=1e-5)
    report, _ = evaluate_product(trained.settings, PRODUCT, out_dir=info.artifacts.parent / "re-evaluated")
    assert report["test"]["auroc"] == pytest.approx(trained.outcome.report["test"]["auroc"], abs=1e-6)


def _eager(bundle: HybridBundle, records: list) -> HybridOutput:
    """The hybrid's outputs in eager PyTorch, the reference for ONNX Runtime."""
    images = np.stack([preprocess(read_image(r.path), bundle.spec) for r in records])
    with torch.no_grad():
        return bundle.model.eval()(torch.from_numpy(images))


def test_training_scores_the_hybrid_on_onnx_runtime_as_eager_pytorch_would(trained: Trained) -> None:
    """Validation logits and test outputs come from ONNX Runtime (the served engine), within the export's parity
    tolerance of eager PyTorch; the caller's model itself never runs."""
    info = resolve_version(trained.settings, PRODUCT, trained.outcome.version)
    bundle = load_any_bundle(info.artifacts / MODEL_FILE)
    assert isinstance(bundle, HybridBundle)
    records = scan_dataset(trained.settings.dataset_dir(PRODUCT))[::8]
    eager = _eager(bundle, records)
    originals = (bundle.model, bundle.model.classifier.upper)  # the logit pass calls the classifier by method
    runs_of_the_callers_model = []
    for module in originals:  # the exports trace copies, whose hooks see themselves, not these
        module.register_forward_hook(
            lambda hooked, *_: runs_of_the_callers_model.append(any(hooked is m for m in originals))
        )
    outputs = hybrid_outputs(bundle.model, records, bundle.spec, "test", batch_size=4)
    logits = classifier_logits(bundle.model.classifier, records, bundle.spec, "validation", batch_size=4)
    for field in HybridOutput._fields:
        np.testing.assert_allclose(outputs[field], getattr(eager, field).numpy(), atol=HYBRID_PARITY_TOLERANCE)
    np.testing.assert_allclose(logits, eager.classifier_logit.numpy(), atol=1e-4)
    assert float(np.ptp(outputs["anomaly_score"])) > 1e-3 and float(np.ptp(logits)) > 1e-3  # not constants
    assert not any(runs_of_the_callers_model)


def test_export_serves_the_fused_verdicts_with_a_map(trained: Trained) -> None:
    settings = trained.settings
    with pytest.raises(InspectionError, match="INT8"):
        export_product(settings, PRODUCT, int8=True)
    outcome = export_product(settings, PRODUCT)
    assert outcome.parity.passed and outcome.parity.map_max_abs_diff is not None
    scorer = OnnxScorer(outcome.fp32_path)
    assert scorer.has_map and scorer.threshold == 0.5
    assert scorer.defect_types == [*sorted(DEFECT_TYPES), "anomaly"]
    assert scorer.metadata["kind"] == "hybrid"

    bundle = load_any_bundle(resolve_version(settings, PRODUCT, outcome.version).artifacts / MODEL_FILE)
    assert isinstance(bundle, HybridBundle)
    records = scan_dataset(settings.dataset_dir(PRODUCT))[::8]
    probability, types, maps = scorer.score_images_with_maps([read_image(r.path) for r in records], batch_size=4)
    expected = _eager(bundle, records)
    np.testing.assert_allclose(probability, expected.defect_probability.numpy(), atol=1e-3)
    assert types.shape == (len(records), len(scorer.defect_types))
    assert maps is not None and maps.shape == (len(records), 128, 128)
    assert (probability >= 0.5).any() and (probability < 0.5).any()


def test_the_curve_is_in_served_units_and_the_export_serves_its_scores(trained: Trained) -> None:
    """The curve is over what the server compares with its threshold, sigmoid(fused z - threshold),
    which is 0.5 at the calibrated one."""
    report, settings = trained.outcome.report, trained.settings
    scores = recorded_scores(settings, PRODUCT, trained.outcome.version)
    assert report["operating_curve"]["threshold"] == 0.5
    assert_curve_recomputes_from_scores(report, scores)
    assert_served_point_is_the_reports(report)
    info = resolve_version(settings, PRODUCT, trained.outcome.version)
    onnx_path = serving_file(info.artifacts) or export_product(settings, PRODUCT).fp32_path
    assert_onnx_serves_the_recorded_scores(settings, PRODUCT, scores, onnx_path, atol=1e-3)
