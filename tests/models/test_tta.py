"""Flip test-time augmentation inside the classifier's forward: the mean over the flips, and the same in ONNX."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from inspection.preprocessing import PreprocessSpec
from models.checkpoint import ModelBundle, classifier_from_state, read_state, save_bundle
from models.classifier import FLIP_DIMS, DefectClassifier
from models.onnx_export import export_classifier
from models.onnx_parity import check_parity
from models.onnx_runtime import OnnxScorer

SPEC = PreprocessSpec(image_size=64, color_mode="gray")
FLIPS = ("h", "v", "hv")


@pytest.fixture(scope="module")
def plain() -> DefectClassifier:
    torch.manual_seed(0)  # random heads: seeded so the flipped views score differently but reproducibly
    return DefectClassifier(num_defect_types=2, trainable_stages=2, pretrained=True).eval()


@pytest.fixture(scope="module")
def with_flips(plain: DefectClassifier) -> DefectClassifier:
    model = DefectClassifier(num_defect_types=2, trainable_stages=2, pretrained=False, tta_flips=FLIPS).eval()
    model.load_state_dict(plain.state_dict())
    return model


def test_forward_averages_the_outputs_over_the_flipped_views(plain, with_flips) -> None:
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        views = [plain(images), *(plain(torch.flip(images, FLIP_DIMS[f])) for f in FLIPS)]
        averaged, logit = with_flips.outputs_and_logit(images)
        plain_logits = [plain.outputs_and_logit(images)[1]] + [
            plain.outputs_and_logit(torch.flip(images, FLIP_DIMS[f]))[1] for f in FLIPS
        ]
    expected = torch.stack([v.defect_probability for v in views]).mean(0)
    assert torch.allclose(averaged.defect_probability, expected, atol=1e-6)
    assert torch.allclose(averaged.type_probabilities, torch.stack([v.type_probabilities for v in views]).mean(0))
    assert torch.allclose(logit, torch.stack(plain_logits).mean(0), atol=1e-5)
    # Each view's map is flipped back onto the input before averaging.
    back = [torch.flip(v.anomaly_map, FLIP_DIMS[f]) for v, f in zip(views[1:], FLIPS, strict=True)]
    maps = [views[0].anomaly_map, *back]
    assert torch.allclose(averaged.anomaly_map, torch.stack(maps).mean(0), atol=1e-6)
    assert not torch.allclose(averaged.defect_probability, views[0].defect_probability)  # the views do differ


def test_a_symmetric_input_scores_as_without_flips(plain, with_flips) -> None:
    half = torch.randn(1, 3, 32, 32)
    symmetric = torch.cat([half, torch.flip(half, (-1,))], dim=-1)
    symmetric = torch.cat([symmetric, torch.flip(symmetric, (-2,))], dim=-2)
    with torch.no_grad():
        assert torch.allclose(with_flips(symmetric).defect_probability, plain(symmetric).defect_probability, atol=1e-5)


def test_unknown_flip_is_refused() -> None:
    with pytest.raises(ValueError, match="tta_flips"):
        DefectClassifier(num_defect_types=1, pretrained=False, tta_flips=("diagonal",))


def test_onnx_export_with_flips_matches_pytorch(with_flips, plain, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(64, 64), (80, 50), (40, 70, 3)]]
    path = export_classifier(with_flips, SPEC, tmp_path / "tta.onnx", {"defect_types": ["a", "b"], "threshold": 0.5})
    parity = check_parity(with_flips, SPEC, path, images)
    assert parity.passed and parity.max_abs_diff < 1e-4
    # The graph averages the views itself: it differs from the model without flips on the same images.
    flipped, _ = OnnxScorer(path).score_images(images)
    plain_path = export_classifier(plain, SPEC, tmp_path / "plain.onnx", {"defect_types": ["a", "b"], "threshold": 0.5})
    unflipped, _ = OnnxScorer(plain_path).score_images(images)
    assert np.abs(flipped - unflipped).max() > 1e-4


def test_saved_bundle_keeps_backbone_and_flips(with_flips, tmp_path: Path) -> None:
    bundle = ModelBundle(with_flips, SPEC, ["a", "b"], 0.5, 0.02)
    state = read_state(save_bundle(bundle, tmp_path / "model.pt"))
    rebuilt = ModelBundle.from_state(state).model
    assert rebuilt.tta_flips == FLIPS and rebuilt.backbone_name == "lite0"
    # A file saved before these options existed rebuilds as Lite0 without flips.
    old = {k: v for k, v in state.items() if k not in ("backbone", "tta_flips")}
    assert ModelBundle.from_state(old).model.tta_flips == ()
    assert classifier_from_state(2, 2, state["state_dict"]).backbone_name == "lite0"


def test_saved_bundle_keeps_the_map_floor(plain, tmp_path: Path) -> None:
    model = copy.deepcopy(plain)
    model.map_floor = 3.25
    state = read_state(save_bundle(ModelBundle(model, SPEC, ["a", "b"], 0.5, 0.02), tmp_path / "model.pt"))
    assert ModelBundle.from_state(state).model.map_floor == 3.25
    # A file saved before the floor existed divided each map by its own peak: a floor of 0 does the same.
    old = {k: v for k, v in state.items() if k != "map_floor"}
    assert ModelBundle.from_state(old).model.map_floor == 0.0
