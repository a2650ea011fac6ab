"""The frozen trunk on ONNX Runtime computes what eager PyTorch computes: training's feature cache may use either."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.layers.conv2d_same import Conv2dSame

from inspection.preprocessing import PreprocessSpec, normalize
from models.classifier import DefectClassifier
from models.trunk_runtime import frozen_on_onnx_runtime
from training.features import trunk_runner


def _images(count: int, size: int) -> np.ndarray:
    """Prepared uint8 images with structure (gradients, a dark line), normalized as training normalizes them."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 220, size, dtype=np.float32)
    images = np.stack([np.add.outer(ramp, ramp[::-1]) / 2 + rng.normal(0, 8, (size, size)) for _ in range(count)])
    images[:, size // 2, size // 4 : 3 * size // 4] = 20
    prepared = np.repeat(images.clip(0, 255).astype(np.uint8)[..., None], 3, axis=3)
    return normalize(prepared, PreprocessSpec(image_size=size))


@pytest.mark.parametrize(("trainable_stages", "size"), [(3, 224), (4, 160)])
def test_the_frozen_trunk_on_onnx_runtime_matches_eager_pytorch(trainable_stages: int, size: int) -> None:
    model = DefectClassifier(2, trainable_stages).eval()  # the pretrained Lite0 weights
    inputs = _images(3, size)
    with torch.no_grad():
        eager = model.trunk(torch.from_numpy(inputs)).numpy()
    on_ort = frozen_on_onnx_runtime(model.trunk, size, threads=1)(inputs)
    assert on_ort.shape == eager.shape and on_ort.dtype == np.float32
    np.testing.assert_allclose(on_ort, eager, atol=2e-4 * float(np.abs(eager).max()))
    assert float(np.abs(eager).max()) > 1.0  # real activations, not a zero map that any runtime would match
    # The trunk was copied: the caller's modules keep their run-time "same" padding, right for any input size.
    assert any(isinstance(module, Conv2dSame) for module in model.trunk.modules())


def test_the_cpu_runner_gives_what_the_cache_stored_before_to_float16_resolution() -> None:
    model = DefectClassifier(2).eval()
    spec = PreprocessSpec(image_size=224)
    inputs = _images(2, 224)
    cached = trunk_runner(model, spec, torch.device("cpu"))(inputs)
    with torch.no_grad():
        eager = model.trunk(torch.from_numpy(inputs)).to(torch.float16)
    assert cached.dtype == torch.float16
    # Within one float16 step of the value (float16 keeps 11 significant bits).
    step = torch.maximum(eager.abs().float(), torch.tensor(2.0**-14)) * 2.0**-10
    assert bool(((cached.float() - eager.float()).abs() <= 2 * step + 1e-4).all())
