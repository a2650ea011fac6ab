"""PatchCore: finds and localizes synthetic defects from good parts alone, bounded memory, exact ONNX export."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from datasets.layout import ImageRecord, scan_dataset
from datasets.synth import generate_synthetic_product
from inspection.imaging import read_image
from inspection.metrics import auroc
from inspection.pixel_metrics import pixel_auroc, pro_score
from inspection.preprocessing import PreprocessSpec
from models.anomaly import AnomalyOutput, PatchCore, fit_patchcore, greedy_coreset, image_batches, score_images
from models.anomaly_export import (
    SERVED_ANOMALY_MAP,
    SERVED_ANOMALY_SCORE,
    SERVED_OUTPUT_NAMES,
    ServedAnomaly,
    check_served_parity,
    export_served_anomaly,
    onnx_served_outputs,
)
from models.onnx_export import OPSET
from models.onnx_parity import ParityError
from models.onnx_runtime import INPUT_NAME, read_onnx_metadata
from training.kinds.anomaly import patch_features_runner

# The classifier's preprocessing for a gray product, at the tests' small size.
SPEC = PreprocessSpec(image_size=128, color_mode="gray")
N_TRAIN_GOODS = 96  # the synthetic goods vary continuously (weave angle and period): fewer leave gaps
BANK_SIZE = 1000  # well under the 96 x 16 x 16 = 24,576 training patches


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[ImageRecord]:
    """200 gray parts (140 good, 15 per defect type) drawn at 256 px, so 1-px scratches survive the resize."""
    root = tmp_path_factory.mktemp("anomaly") / "widget"
    generate_synthetic_product(root, n=200, seed=3, image_size=256, defect_fraction=0.3)
    return scan_dataset(root)


@pytest.fixture(scope="module")
def goods(records: list[ImageRecord]) -> list[np.ndarray]:
    return [read_image(r.path) for r in records if not r.is_defect]


@pytest.fixture(scope="module")
def fitted(goods: list[np.ndarray]) -> PatchCore:
    model = PatchCore()
    model.fit(image_batches(goods[:N_TRAIN_GOODS], SPEC), memory_bank_size=BANK_SIZE, seed=0)
    return model


def _mask(record: ImageRecord) -> np.ndarray:
    if record.mask is None:
        return np.zeros((SPEC.image_size, SPEC.image_size), np.uint8)
    size = (SPEC.image_size, SPEC.image_size)
    return cv2.resize(read_image(record.mask), size, interpolation=cv2.INTER_NEAREST)


def test_finds_and_localizes_defects_it_never_saw(fitted: PatchCore, records: list[ImageRecord]) -> None:
    held_out = [r for r in records if not r.is_defect][N_TRAIN_GOODS:] + [r for r in records if r.is_defect]
    scores, maps = score_images(fitted, [read_image(r.path) for r in held_out], SPEC)
    labels = [int(r.is_defect) for r in held_out]
    masks = [_mask(r) for r in held_out]
    assert maps.shape == (len(held_out), SPEC.image_size, SPEC.image_size)
    image_auroc = auroc(labels, scores)
    assert image_auroc is not None and image_auroc >= 0.95
    pixel = pixel_auroc(masks, maps)
    assert pixel is not None and pixel >= 0.9
    pro = pro_score(masks, maps)
    assert pro is not None and pro >= 0.8


def test_training_fits_and_scores_on_onnx_runtime_as_eager_pytorch_does(
    fitted: PatchCore, goods: list[np.ndarray], records: list[ImageRecord]
) -> None:
    features_of = patch_features_runner(fitted, SPEC)
    assert patch_features_runner(fitted, SPEC) is features_of  # one session per model, not one per call
    batch = next(image_batches(goods[N_TRAIN_GOODS : N_TRAIN_GOODS + 4], SPEC))
    with torch.no_grad():
        eager = fitted.patch_features(batch)
    on_ort = features_of(batch)
    assert on_ort.shape == eager.shape and on_ort.dtype == torch.float32
    torch.testing.assert_close(on_ort, eager, rtol=0, atol=2e-4 * float(eager.abs().max()))
    # Scores and maps of parts good and defective: the distances to the same bank agree.
    held_out = [read_image(r.path) for r in records if r.is_defect][:6] + goods[N_TRAIN_GOODS : N_TRAIN_GOODS + 6]
    eager_scores, eager_maps = score_images(fitted, held_out, SPEC)
    ort_scores, ort_maps = score_images(fitted, held_out, SPEC, features_of=features_of)
    np.testing.assert_allclose(ort_scores, eager_scores, rtol=1e-3)
    np.testing.assert_allclose(ort_maps, eager_maps, rtol=0, atol=1e-3 * float(eager_maps.max()))
    # A bank built from the session's features ranks the parts as the eager bank does.
    on_ort_bank = PatchCore()
    fit_patchcore(
        on_ort_bank,
        image_batches(goods[:N_TRAIN_GOODS], SPEC),
        BANK_SIZE,
        seed=0,
        features_of=patch_features_runner(on_ort_bank, SPEC),
    )
    held_out_scores, _ = score_images(on_ort_bank, held_out, SPEC)
    np.testing.assert_allclose(held_out_scores, eager_scores, rtol=0.02)


def test_memory_bank_is_bounded_whatever_the_number_of_images(goods: list[np.ndarray]) -> None:
    model = PatchCore()  # pretrained: random weights make denormal activations, many times slower on CPU
    patches_per_image = (SPEC.image_size // 8) ** 2
    # Fewer patches than the bound: all kept. More: exactly the bound, however many images come.
    assert model.fit(image_batches(goods[:1], SPEC), memory_bank_size=400) == patches_per_image
    assert model.fit(image_batches(goods[:4], SPEC), memory_bank_size=400) == 400
    assert model.fit(image_batches(goods[:8], SPEC, batch_size=2), memory_bank_size=400) == 400
    # A random-sample cap below the collected patches (8 x 256) still yields a full, bounded bank.
    bank = fit_patchcore(model, image_batches(goods[:8], SPEC, batch_size=2), 400, seed=1, max_patches=600)
    assert bank.shape == (400, model.feature_dim)
    assert model.memory_bank.shape == (400, model.feature_dim)
    with pytest.raises(ValueError, match="at least one good image"):
        model.fit([], memory_bank_size=400)


def test_coreset_picks_spread_out_rows_not_duplicates() -> None:
    # Two tight clusters of 500 rows: a 2-row k-center coreset must take one row from each.
    rows = torch.cat([torch.randn(500, 8) * 0.01, torch.randn(500, 8) * 0.01 + 10.0])
    picked = greedy_coreset(rows, 2, torch.Generator().manual_seed(0))
    assert sorted(int(i) // 500 for i in picked) == [0, 1]


def test_outputs_are_named_shaped_and_the_model_stays_frozen(fitted: PatchCore, goods: list[np.ndarray]) -> None:
    batch = next(image_batches(goods[-3:], SPEC))
    fitted.train()  # a training loop calling .train() must not switch BatchNorm to batch statistics
    assert not fitted.training
    assert not any(p.requires_grad for p in fitted.parameters())
    with torch.no_grad():
        output = fitted(batch)
    assert output._fields == AnomalyOutput._fields
    assert output.anomaly_score.shape == (3,)
    assert output.anomaly_map.shape == (3, 1, SPEC.image_size, SPEC.image_size)
    # The score is the worst patch; blurring and upsampling can only lower the peak.
    assert torch.all(output.anomaly_map.flatten(1).amax(1) <= output.anomaly_score + 1e-4)
    with pytest.raises(RuntimeError, match="empty memory bank"):
        PatchCore(pretrained=False)(batch)


def test_state_dict_round_trip_restores_the_bank(fitted: PatchCore, goods: list[np.ndarray]) -> None:
    restored = PatchCore(pretrained=False, **fitted.config())
    restored.load_state_dict(fitted.state_dict())
    assert restored.memory_bank.shape == fitted.memory_bank.shape
    batch = next(image_batches(goods[-2:], SPEC))
    with torch.no_grad():
        torch.testing.assert_close(restored(batch).anomaly_map, fitted(batch).anomaly_map)


THRESHOLD, SCALE = 12.5, 1.5  # a distance threshold and good-score spread, as calibration would give


@pytest.fixture(scope="module")
def served(fitted: PatchCore) -> ServedAnomaly:
    return ServedAnomaly(fitted, THRESHOLD, SCALE)


@pytest.fixture(scope="module")
def exported(served: ServedAnomaly, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "anomaly.onnx"
    return export_served_anomaly(served, SPEC, path, {"product": "widget"})


def test_export_has_named_outputs_dynamic_batch_and_metadata(exported: Path, fitted: PatchCore) -> None:
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == list(SERVED_OUTPUT_NAMES)
    map_dims = next(o for o in proto.graph.output if o.name == SERVED_ANOMALY_MAP).type.tensor_type.shape.dim
    assert map_dims[0].dim_param == "batch"
    assert [d.dim_value for d in map_dims[1:]] == [1, SPEC.image_size, SPEC.image_size]
    # timm's run-time "same" padding would export as Ceil-based shape arithmetic.
    assert not any(node.op_type == "Ceil" for node in proto.graph.node)
    metadata = read_onnx_metadata(exported)
    assert metadata["preprocess"] == SPEC.to_dict()
    assert metadata["model_kind"] == "patchcore"
    assert metadata["anomaly"]["distance_threshold"] == THRESHOLD and metadata["anomaly"]["score_scale"] == SCALE
    assert metadata["threshold"] == 0.5  # the served probability scale


def test_onnx_runtime_reproduces_score_and_map(
    exported: Path, served: ServedAnomaly, records: list[ImageRecord]
) -> None:
    # Decoded as the server gets them: a defect, a good part, plus a color and an odd-sized frame.
    images = [read_image(records[0].path), read_image(records[-1].path)]
    rng = np.random.default_rng(0)
    images += [rng.integers(0, 256, (90, 150, 3), dtype=np.uint8), rng.integers(0, 256, (300, 200), dtype=np.uint8)]
    result = check_served_parity(served, SPEC, exported, images, batch_size=3)
    assert result.passed and result.n_images == 4
    assert result.max_relative_diff < 1e-4
    outputs = onnx_served_outputs(exported, images, batch_size=4)
    assert outputs[SERVED_ANOMALY_SCORE].shape == (4,)
    assert outputs[SERVED_ANOMALY_MAP].shape == (4, 1, SPEC.image_size, SPEC.image_size)


def test_parity_fails_loudly_when_the_export_is_another_model(
    exported: Path, served: ServedAnomaly, goods: list[np.ndarray]
) -> None:
    other = copy.deepcopy(served)
    other.patchcore.memory_bank = other.patchcore.memory_bank * 1.5
    with pytest.raises(ParityError, match="disagree"):
        check_served_parity(other, SPEC, exported, goods[-2:])
