"""ONNX export: checked, self-describing, optimizable, and provably the same model as in PyTorch."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from inspection.preprocessing import PreprocessSpec, preprocess
from models.classifier import DefectClassifier
from models.onnx_export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAMES,
    export_classifier,
    optimize_onnx,
    weights_sha256,
)
from models.onnx_parity import ParityError, check_parity
from models.onnx_runtime import MAP_OUTPUT, OnnxScorer, read_onnx_metadata

REPO = Path(__file__).resolve().parents[2]
SPEC = PreprocessSpec(image_size=64, color_mode="gray")
DEFECT_TYPES = ["scratch", "spot", "crack"]


@pytest.fixture(scope="module")
def model() -> DefectClassifier:
    torch.manual_seed(0)  # the heads are random: seeded so every run exports the same model
    return DefectClassifier(num_defect_types=len(DEFECT_TYPES), trainable_stages=2, pretrained=True).eval()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Decoded images as the server gets them: gray and color, smaller, equal and larger than the input."""
    rng = np.random.default_rng(0)
    shapes = [(48, 80), (64, 64), (100, 90, 3), (30, 40, 3), (130, 70)]
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in shapes]


@pytest.fixture(scope="module")
def metadata(model: DefectClassifier) -> dict[str, Any]:
    return {
        "defect_types": DEFECT_TYPES,
        "threshold": 0.37,
        "target_miss_rate": 0.01,
        "model_version": 3,
        "product": "widget",
        "training_data": {"n_good": 40, "n_defect": 12},
        "weights_sha256": weights_sha256(model),
    }


@pytest.fixture(scope="module")
def exported(model: DefectClassifier, metadata: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_classifier(model, SPEC, tmp_path_factory.mktemp("onnx") / "model.onnx", metadata)


def test_export_is_a_checked_opset_17_graph_with_named_io(exported: Path) -> None:
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    default_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert default_opset >= OPSET
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [*OUTPUT_NAMES, MAP_OUTPUT]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [3, SPEC.image_size, SPEC.image_size]


def test_same_padding_is_exported_as_static_pads(exported: Path) -> None:
    # timm's TF-"same" convs compute pads from the input shape; the export fixes them for the spec's size.
    ops = {node.op_type for node in onnx.load(str(exported)).graph.node}
    assert "Pad" in ops
    assert not ops & {"Shape", "Ceil", "Gather"}


def test_batch_dimension_is_dynamic(exported: Path) -> None:
    scorer = OnnxScorer(exported, threads=1)
    rng = np.random.default_rng(1)
    for n in (3, 1):
        defect, types = scorer.score_batch(rng.standard_normal((n, 3, 64, 64)).astype(np.float32))
        assert defect.shape == (n,)
        assert types.shape == (n, len(DEFECT_TYPES))
        assert np.allclose(types.sum(axis=1), 1.0, atol=1e-5)


def test_metadata_round_trips(exported: Path, metadata: dict[str, Any]) -> None:
    assert read_onnx_metadata(exported) == {**metadata, "preprocess": SPEC.to_dict()}
    scorer = OnnxScorer(exported, threads=1)
    assert scorer.spec == SPEC
    assert scorer.defect_types == DEFECT_TYPES
    assert scorer.threshold == pytest.approx(0.37)


def test_optimized_model_keeps_metadata_and_scores(exported: Path, images: list[np.ndarray], tmp_path: Path) -> None:
    optimized = optimize_onnx(exported, tmp_path / "model.opt.onnx")
    assert read_onnx_metadata(optimized) == read_onnx_metadata(exported)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind
    raw = OnnxScorer(exported, threads=1).score_images(images, batch_size=2)
    fast = OnnxScorer(optimized, threads=1).score_images(images, batch_size=2)
    for a, b in zip(raw, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_exported_model_matches_pytorch_on_decoded_images(
    model: DefectClassifier, exported: Path, images: list[np.ndarray]
) -> None:
    result = check_parity(model, SPEC, exported, images, tolerance=1e-4)
    assert result.passed
    assert result.n_images == len(images)
    assert result.max_abs_diff <= 1e-4
    assert result.map_max_abs_diff is not None and result.map_max_abs_diff <= 1e-3


def test_classifier_map_is_the_class_activation_map_of_the_defect_head(model: DefectClassifier) -> None:
    images = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        output = model(images)
        features = model.upper(model.trunk(images))
        weights = model.defect_head.weight[0]
        # The defect logit is the spatial mean of the weighted channel sum, plus the bias: the map is exact.
        weighted = torch.einsum("nchw,c->nhw", features, weights)
        logit = torch.logit(output.defect_probability.double()).float()
        torch.testing.assert_close(weighted.mean(dim=(1, 2)) + model.defect_head.bias, logit, atol=1e-4, rtol=1e-4)
    cam = output.anomaly_map
    assert cam.shape == (2, 1, 64, 64)
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
    coarse = torch.relu(weighted)
    for index in range(2):  # the upsampled map peaks where the coarse activation does (a cell is 32 px)
        if float(coarse[index].max()) > 0:
            row, col = divmod(int(coarse[index].argmax()), coarse.shape[-1])
            peak_row, peak_col = divmod(int(cam[index, 0].argmax()), 64)
            assert (peak_row // 32, peak_col // 32) == (row, col)
            assert float(cam[index].max()) == pytest.approx(1.0, abs=1e-2)


def test_a_map_whose_peak_is_under_the_floor_draws_dimmer_in_torch_and_in_the_export(
    model: DefectClassifier, images: list[np.ndarray], metadata: dict[str, Any], tmp_path: Path
) -> None:
    base = copy.deepcopy(model)
    with torch.no_grad():  # positive head weights on non-negative features: every image raises its logit somewhere
        base.defect_head.weight.abs_()
    floored = copy.deepcopy(base)
    batch = torch.from_numpy(np.stack([preprocess(image, SPEC) for image in images]))
    with torch.no_grad():
        own_peak = base(batch).anomaly_map
        peaks = base.activation_peaks(base.trunk(batch))
        assert float(peaks.min()) > 0
        floored.map_floor = 2 * float(peaks.max())
        dimmed = floored(batch).anomaly_map
        strong = copy.deepcopy(base)
        strong.map_floor = 0.5 * float(peaks.min())  # every peak is above it: the maps are as before
        torch.testing.assert_close(strong(batch).anomaly_map, own_peak)
    torch.testing.assert_close(own_peak.amax(dim=(1, 2, 3)), torch.ones(len(images)), atol=1e-2, rtol=0)
    # Under the floor a map keeps its shape and is drawn at its peak's share of the floor (<= 1/2 here).
    scale = (peaks / floored.map_floor).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(dimmed, own_peak * scale, atol=1e-4, rtol=1e-3)
    assert float(dimmed.max()) <= 0.5 + 1e-3
    exported = export_classifier(floored, SPEC, tmp_path / "floored.onnx", metadata)
    parity = check_parity(floored, SPEC, exported, images)
    assert parity.passed and parity.map_max_abs_diff is not None and parity.map_max_abs_diff <= 1e-4
    maps = OnnxScorer(exported, threads=1).score_images_with_maps(images)[2]
    assert maps is not None and float(maps.max()) <= 0.5 + 1e-3


def test_the_map_floor_is_the_low_quantile_of_the_validation_defects_peaks(model: DefectClassifier) -> None:
    floored = copy.deepcopy(model)
    peaks = torch.tensor([0.0, 50.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0])
    is_defect = torch.tensor([0.0, 0.0] + [1.0] * 10)  # the good images' peaks (0 and 50) play no part
    assert floored.set_map_floor(peaks, is_defect) == pytest.approx(3.8)  # 10 % of the way from 2 to 20
    assert floored.map_floor == pytest.approx(3.8)
    assert floored.set_map_floor(peaks, torch.zeros(12)) == 0.0  # no defect to learn from: own peaks, as before


def test_exported_map_is_in_unit_range_at_input_size(exported: Path, images: list[np.ndarray]) -> None:
    scorer = OnnxScorer(exported, threads=1)
    assert scorer.has_map
    defect, types, maps = scorer.score_images_with_maps(images, batch_size=2)
    assert maps is not None and maps.shape == (len(images), 64, 64) and maps.dtype == np.float32
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    plain = scorer.score_images(images, batch_size=2)  # existing callers: still (defect, types)
    np.testing.assert_allclose(plain[0], defect, atol=1e-6)
    np.testing.assert_allclose(plain[1], types, atol=1e-6)


def _without_map(exported: Path, path: Path) -> Path:
    """An older-style export: the same graph with only the two probability outputs."""
    proto = onnx.load(str(exported))
    kept = [output for output in proto.graph.output if output.name != MAP_OUTPUT]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.save(proto, str(path))
    return path


def test_model_without_map_scores_and_passes_parity(
    model: DefectClassifier, exported: Path, images: list[np.ndarray], tmp_path: Path
) -> None:
    path = _without_map(exported, tmp_path / "no-map.onnx")
    scorer = OnnxScorer(path, threads=1)
    assert not scorer.has_map
    defect, types, maps = scorer.score_images_with_maps(images, batch_size=2)
    assert maps is None and defect.shape == (len(images),) and types.shape == (len(images), len(DEFECT_TYPES))
    result = check_parity(model, SPEC, path, images, tolerance=1e-4)
    assert result.passed and result.map_max_abs_diff is None


def _with_map_rewritten(exported: Path, path: Path, op: str, value: float, map_first: bool) -> Path:
    """A copy of the export whose map output is `op` of the true map and the constant `value`."""
    proto = onnx.load(str(exported))
    tail = next(output for output in proto.graph.output if output.name == MAP_OUTPUT)
    inner = f"{MAP_OUTPUT}_raw"
    for node in proto.graph.node:
        node.output[:] = [inner if name == MAP_OUTPUT else name for name in node.output]
    proto.graph.initializer.append(onnx.helper.make_tensor("constant", onnx.TensorProto.FLOAT, [], [value]))
    operands = [inner, "constant"] if map_first else ["constant", inner]
    proto.graph.node.append(onnx.helper.make_node(op, operands, [tail.name]))
    onnx.save(proto, str(path))
    return path


def test_a_map_far_from_pytorch_fails_the_gate(
    model: DefectClassifier, exported: Path, images: list[np.ndarray], tmp_path: Path
) -> None:
    """Parity covers the map: an export whose map is inverted (probabilities intact) is refused."""
    path = _with_map_rewritten(exported, tmp_path / "inverted.onnx", "Sub", 1.0, map_first=False)
    with pytest.raises(ParityError, match="anomaly maps"):
        check_parity(model, SPEC, path, images, tolerance=1e-4)


def test_the_map_bar_is_one_gray_level_of_the_drawn_map(
    model: DefectClassifier, exported: Path, images: list[np.ndarray], tmp_path: Path
) -> None:
    """Maps are drawn as 8-bit images: a difference under one gray level passes, one of two gray levels does not."""
    unseen = _with_map_rewritten(exported, tmp_path / "unseen.onnx", "Add", 0.5 / 255, map_first=True)
    result = check_parity(model, SPEC, unseen, images, tolerance=1e-4)
    assert result.passed and result.map_max_abs_diff == pytest.approx(0.5 / 255, abs=1e-5)
    visible = _with_map_rewritten(exported, tmp_path / "visible.onnx", "Add", 2 / 255, map_first=True)
    with pytest.raises(ParityError, match="anomaly maps"):
        check_parity(model, SPEC, visible, images, tolerance=1e-4)


@pytest.mark.parametrize(
    "broken",
    [replace(SPEC, image_size=72), replace(SPEC, mean=0.0, std=255.0), replace(SPEC, color_mode="color")],
    ids=["image_size", "normalization", "color_mode"],
)
def test_preprocessing_mismatch_fails_the_gate(
    model: DefectClassifier, images: list[np.ndarray], broken: PreprocessSpec, tmp_path: Path
) -> None:
    path = export_classifier(model, SPEC, tmp_path / "broken.onnx", {"preprocess": broken.to_dict()})
    with pytest.raises(ParityError):
        check_parity(model, SPEC, path, images, tolerance=1e-4)


def test_hashes_are_deterministic_and_sensitive(model: DefectClassifier, exported: Path) -> None:
    assert weights_sha256(model) == weights_sha256(model)
    changed = DefectClassifier(num_defect_types=len(DEFECT_TYPES), trainable_stages=2, pretrained=True)
    changed.load_state_dict(model.state_dict())
    assert weights_sha256(changed) == weights_sha256(model)
    with torch.no_grad():
        changed.defect_head.bias += 1e-3
    assert weights_sha256(changed) != weights_sha256(model)


def test_runtime_module_does_not_import_torch() -> None:
    code = "import sys, models.onnx_runtime; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
