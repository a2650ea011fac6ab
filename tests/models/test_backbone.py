"""The shipped ImageNet weights really load, and the classifier's outputs are named and well formed."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from inspection.preprocessing import PreprocessSpec, preprocess
from models.backbone import (
    backbone_spec,
    create_backbone,
    create_lite0,
    pretrained_checkpoint_path,
    rename_checkpoint_keys,
)
from models.classifier import ClassifierOutput, DefectClassifier

# ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
IMAGENET_CATS = range(281, 286)


@pytest.fixture(scope="module")
def imagenet_model() -> torch.nn.Module:
    return create_lite0(pretrained=True).eval()


def test_renamed_checkpoint_covers_every_timm_parameter() -> None:
    state = torch.load(pretrained_checkpoint_path(), map_location="cpu", weights_only=True)
    renamed = rename_checkpoint_keys(state)
    expected = create_lite0(pretrained=False).state_dict()
    assert set(renamed) == set(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)


def test_real_photo_of_a_cat_is_classified_as_a_cat(imagenet_model: torch.nn.Module) -> None:
    spec = PreprocessSpec(image_size=224, color_mode="color")
    image = torch.from_numpy(preprocess(skimage.data.chelsea(), spec))[None]
    with torch.no_grad():
        probabilities = imagenet_model(image).softmax(dim=1)[0]
    top = int(probabilities.argmax())
    assert top in IMAGENET_CATS, f"top class {top}"
    assert float(probabilities[list(IMAGENET_CATS)].sum()) > 0.5


def test_random_weights_do_not_recognise_the_cat() -> None:
    # Guards the test above: it must depend on the loaded weights, not on luck.
    torch.manual_seed(0)
    model = create_lite0(pretrained=False).eval()
    spec = PreprocessSpec(image_size=224, color_mode="color")
    image = torch.from_numpy(preprocess(skimage.data.chelsea(), spec))[None]
    with torch.no_grad():
        probabilities = model(image).softmax(dim=1)[0]
    assert float(probabilities[list(IMAGENET_CATS)].sum()) < 0.2


def test_gray_photo_feeds_the_color_stem(imagenet_model: torch.nn.Module) -> None:
    # A gray product replicates luminance into the three channels; the pretrained stem still sees a cat.
    gray = np.dot(skimage.data.chelsea()[..., :3], [0.299, 0.587, 0.114]).astype(np.uint8)
    spec = PreprocessSpec(image_size=224, color_mode="gray")
    inputs = preprocess(gray, spec)
    assert inputs.shape == (3, 224, 224)
    assert np.array_equal(inputs[0], inputs[1]) and np.array_equal(inputs[1], inputs[2])
    with torch.no_grad():
        top = int(imagenet_model(torch.from_numpy(inputs)[None]).argmax())
    assert top in IMAGENET_CATS


def test_classifier_outputs_are_named_probabilities() -> None:
    model = DefectClassifier(num_defect_types=3, trainable_stages=2, pretrained=False).eval()
    with torch.no_grad():
        output = model(torch.zeros(2, 3, 96, 96))
    assert isinstance(output, ClassifierOutput)
    assert output.defect_probability.shape == (2,)
    assert output.type_probabilities.shape == (2, 3)
    assert torch.allclose(output.type_probabilities.sum(dim=1), torch.ones(2))
    assert bool(((output.defect_probability >= 0) & (output.defect_probability <= 1)).all())


def test_trunk_is_the_split_of_the_backbone() -> None:
    # trunk + upper must compute exactly the pretrained backbone's features, whatever the split point.
    backbone = create_lite0(pretrained=True).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        reference = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
        for stages in (0, 3, 7):
            model = DefectClassifier(num_defect_types=1, trainable_stages=stages).eval()
            assert torch.allclose(model.embed(model.trunk(x)), reference, atol=1e-5)


@pytest.mark.parametrize("name", ["lite1", "lite2"])
def test_larger_backbones_load_strictly_and_see_the_cat(name: str) -> None:
    # The same strict renaming with the deeper stages of Lite1 / Lite2, and the same proof the weights loaded.
    state = torch.load(pretrained_checkpoint_path(name), map_location="cpu", weights_only=True)
    renamed = rename_checkpoint_keys(state, backbone_spec(name).stage_depths)
    expected = create_backbone(name, pretrained=False).state_dict()
    assert set(renamed) == set(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)
    model = create_backbone(name, pretrained=True).eval()
    image = torch.from_numpy(preprocess(skimage.data.chelsea(), PreprocessSpec(image_size=224)))[None]
    with torch.no_grad():
        probabilities = model(image).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in IMAGENET_CATS
    assert float(probabilities[list(IMAGENET_CATS)].sum()) > 0.5


def test_lite0_layout_does_not_fit_a_larger_checkpoint() -> None:
    # Lite2's 21 blocks cannot be numbered with Lite0's 16: a wrong table is an error, not a silent partial load.
    state = torch.load(pretrained_checkpoint_path("lite2"), map_location="cpu", weights_only=True)
    with pytest.raises(KeyError):
        rename_checkpoint_keys(state)


def test_classifier_on_lite2_is_the_split_of_its_backbone() -> None:
    backbone = create_backbone("lite2", pretrained=True).eval()
    model = DefectClassifier(num_defect_types=2, trainable_stages=4, backbone="lite2").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        reference = backbone.forward_head(backbone.forward_features(x), pre_logits=True)
        assert torch.allclose(model.embed(model.trunk(x)), reference, atol=1e-5)
    assert model.backbone_name == "lite2"
