"""Static INT8 quantization of a small real ONNX model with each calibration method: it runs and stays close."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from inspection.preprocessing import PreprocessSpec, preprocess
from models.quantize import (
    CALIBRATION_METHODS,
    CalibrationName,
    ImageCalibrationReader,
    _chunk_size,
    calibration_indices,
    calibration_options,
    quantize_int8,
)

SPEC = PreprocessSpec(image_size=32, color_mode="color")
# The legacy (TorchScript) exporter is the one the project uses; its deprecation notices are expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


def _images(seed: int, n: int) -> list[np.ndarray]:
    """Smooth random images (gradients plus blobs), closer to photos than white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:40, 0:40] / 40.0
    images = []
    for _ in range(n):
        base = rng.random(3) * 120 + 60 * np.stack([x, y, x * y], axis=-1) * rng.random(3)
        cy, cx = rng.random(2)
        blob = 100 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)[..., None] * rng.random(3)
        images.append(np.clip(base + blob + rng.normal(0, 4, (40, 40, 3)), 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, SPEC.image_size, SPEC.image_size),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"product": "tiny"})
    onnx.save(model, str(path))
    return path


def _run(path: Path, images: list[np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = np.stack([preprocess(image, SPEC) for image in images])
    return session.run(None, {"image": batch})[0]


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_each_calibration_method_gives_a_close_runnable_int8_model(
    fp32_model: Path, tmp_path: Path, method: CalibrationName
) -> None:
    out = quantize_int8(fp32_model, tmp_path / f"{method}.onnx", _images(1, 48), SPEC, method=method)
    quantized = onnx.load(str(out))
    op_types = {node.op_type for node in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types  # really quantized, not a copy
    assert {p.key: p.value for p in quantized.metadata_props} == {"product": "tiny"}
    # 7-bit weights: a u8s8 pair of products cannot saturate 16 bits on CPUs without VNNI (2 * 255 * 64 < 2**15).
    weights = [
        onnx.numpy_helper.to_array(t) for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights and all(int(np.abs(w.astype(np.int32)).max()) <= 64 for w in weights)
    held_out = _images(2, 32)
    reference, int8 = _run(fp32_model, held_out), _run(out, held_out)
    assert int8.shape == reference.shape
    spread = float(reference.std())
    assert np.abs(int8 - reference).max() < 0.05 * spread, (method, np.abs(int8 - reference).max(), spread)
    assert not list(tmp_path.glob(".quantize-*"))  # the work folder is gone


def test_unknown_method_is_rejected_before_any_work(fp32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown calibration method 'kl'"):
        quantize_int8(fp32_model, tmp_path / "x.onnx", _images(1, 4), SPEC, method="kl")  # type: ignore[arg-type]
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_is_fed_in_chunks_that_divide_the_image_count() -> None:
    assert _chunk_size(256) == 16 and _chunk_size(300) == 15 and _chunk_size(7) == 7 and _chunk_size(17) == 1
    assert calibration_options("percentile", 300) == {
        "CalibStridedMinMax": 15,
        "CalibPercentile": 99.999,
        "CalibTensorRangeSymmetric": False,
    }
    reader = ImageCalibrationReader(_images(3, 5), SPEC)
    reader.set_range(2, 4)
    fed = [reader.get_next(), reader.get_next(), reader.get_next()]
    assert fed[0] is not None and fed[0]["image"].shape == (1, 3, 32, 32) and fed[1] is not None and fed[2] is None
    assert len(reader) == 5


def test_calibration_sample_is_proportional_by_label_seeded_and_bounded() -> None:
    labels = ["good"] * 700 + ["crack"] * 200 + ["spot"] * 60 + ["rare"] * 4
    chosen = calibration_indices(labels, 256, seed=0)
    assert len(chosen) == len(set(chosen)) == 256 and chosen == sorted(chosen)
    counts = Counter(labels[i] for i in chosen)
    assert counts == {"good": 186, "crack": 53, "spot": 16, "rare": 1}  # 256/964 of each, rounded
    assert calibration_indices(labels, 256, seed=0) == chosen
    assert calibration_indices(labels, 256, seed=1) != chosen
    assert calibration_indices(labels[:10], 256) == list(range(10))  # fewer than asked: all of them
