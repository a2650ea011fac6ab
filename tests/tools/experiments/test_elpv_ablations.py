"""The ELPV ablations an experiment can run (tools.experiments.elpv_ablations): each changes what it says, and only
while it is in force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import inspection.preprocessing as preprocessing
import training.kinds.classifier as classifier_kind
import training.trainer as trainer
from datasets.layout import ImageRecord
from inspection.preprocessing import PreprocessSpec, prepare_image, preprocess
from models.classifier import DefectClassifier
from tools.experiments.elpv_ablations import (
    MIXUP_ALPHA,
    GeneralizedMeanPool,
    ablation,
    label_stratified_share,
    mixed,
    stretched,
    unanimous,
)


def test_generalized_mean_lies_between_the_average_and_the_maximum() -> None:
    features = torch.rand(2, 5, 7, 7) * 6.0
    features[0, 0, 3, 3] = 6.0  # one bright position, as a small crack gives
    average = features.mean(dim=(-2, -1))
    maximum = features.amax(dim=(-2, -1))
    gem = GeneralizedMeanPool(3.0)(features).flatten(1)
    assert torch.allclose(GeneralizedMeanPool(1.0)(features).flatten(1), average, atol=1e-5)
    assert bool(((gem > average) & (gem < maximum)).all())


def test_gem_pooling_holds_only_inside_its_block() -> None:
    with ablation("gem-pooling"):
        pooled = DefectClassifier(2, pretrained=False)
    after = DefectClassifier(2, pretrained=False)
    assert isinstance(pooled.pool, GeneralizedMeanPool)
    assert isinstance(after.pool, nn.AdaptiveAvgPool2d)
    # Same parameters either way, so a checkpoint of one loads into the other.
    assert pooled.state_dict().keys() == after.state_dict().keys()


def test_unanimous_keeps_only_cells_every_annotator_agreed_on() -> None:
    def cell(share: float | None) -> ImageRecord:
        meta = {} if share is None else {"defect_probability": share}
        return ImageRecord(f"good/{share}.png", "good", Path("x.png"), meta=meta)

    kept = [r.meta.get("defect_probability") for r in map(cell, (0.0, 0.3333, 0.6667, 1.0, None)) if unanimous(r)]
    assert kept == [0.0, 1.0]


def test_a_training_share_keeps_each_labels_proportion_and_changes_with_the_seed() -> None:
    records = [ImageRecord(f"{label}/{i}.png", label, Path("x.png")) for label in ("good", "defect") for i in range(40)]
    records += [ImageRecord(f"crack/{i}.png", "crack", Path("x.png")) for i in range(3)]
    half = label_stratified_share(records, 0.5, seed=0)
    counts = {label: sum(r.label == label for r in half) for label in ("good", "defect", "crack")}
    assert counts == {"good": 20, "defect": 20, "crack": 2}
    assert half == [r for r in records if r in half]  # the original order kept
    assert half == label_stratified_share(records, 0.5, seed=0)
    assert half != label_stratified_share(records, 0.5, seed=1)
    quarter = label_stratified_share(records, 0.25, seed=0)
    assert {label: sum(r.label == label for r in quarter) for label in counts} == {"good": 10, "defect": 10, "crack": 1}


def test_feature_mixup_mixes_features_and_defect_targets_by_one_dominant_lambda() -> None:
    features = torch.rand(8, 3, 4, 4)
    is_defect = (torch.arange(8) % 2).float()
    types = torch.where(is_defect > 0, 0, -1)
    torch.manual_seed(0)
    mixed_features, mixed_targets, mixed_types = mixed(features, is_defect, types)
    torch.manual_seed(0)  # the same draws, to recompute the mix by hand
    draws = torch.distributions.Beta(MIXUP_ALPHA, MIXUP_ALPHA).sample((8,))
    partner = torch.randperm(8)
    lam = torch.maximum(draws, 1.0 - draws)
    assert bool((lam >= 0.5).all())
    expected = lam.reshape(8, 1, 1, 1) * features + (1.0 - lam.reshape(8, 1, 1, 1)) * features[partner]
    assert torch.allclose(mixed_features, expected)
    assert torch.allclose(mixed_targets, lam * is_defect + (1.0 - lam) * is_defect[partner])
    assert torch.equal(mixed_types, types)  # each image dominates its own mix, so its type stays
    assert not torch.allclose(mixed_features, features)


def test_patching_ablations_restore_what_they_replaced() -> None:
    batch, prepare = trainer._batch, classifier_kind._prepare_data
    with ablation("feature-mixup"):
        assert trainer._batch is not batch
    for name in ("unanimous-training", "training-half", "training-quarter"):
        with ablation(name):
            assert classifier_kind._prepare_data is not prepare
    assert trainer._batch is batch and classifier_kind._prepare_data is prepare


def _dim_cell_with_a_faint_crack() -> np.ndarray:
    rng = np.random.default_rng(0)
    cell = (60 + rng.normal(0, 3, (96, 96))).clip(0, 255).astype(np.uint8)  # a dim, low-contrast module
    cell[40:42, 10:80] -= 8  # a thin crack a little darker than its surroundings
    return cell


def test_contrast_stretch_spreads_the_middle_98_percent_over_the_full_range() -> None:
    cell = _dim_cell_with_a_faint_crack()
    out = stretched(cell)
    low, high = np.percentile(out, (1, 99))
    assert low <= 1 and high >= 254
    # The crack's darkening against its row neighbours grows with the range.
    assert int(out[45, 20]) - int(out[41, 20]) > int(cell[45, 20]) - int(cell[41, 20])
    flat = np.full((8, 8), 77, np.uint8)
    assert np.array_equal(stretched(flat), flat)


def test_gray_level_ablations_change_gray_inputs_in_every_preprocessing_path_and_only_inside_the_block() -> None:
    spec = PreprocessSpec(image_size=64, color_mode="gray")
    cell = _dim_cell_with_a_faint_crack()
    color = np.repeat(cell[:, :, None], 3, axis=2)
    plain_prepared, plain_input = prepare_image(cell, spec), preprocess(cell, spec)
    color_spec = PreprocessSpec(image_size=64, color_mode="color")
    plain_color = preprocess(color, color_spec)
    for name in ("clahe", "contrast-stretch"):
        with ablation(name):
            mapped_prepared, mapped_input = prepare_image(cell, spec), preprocess(cell, spec)
            assert np.array_equal(preprocess(color, color_spec), plain_color)  # color images are left alone
        assert mapped_prepared.std() > plain_prepared.std()  # the dim cell's contrast was raised
        # Training's path (prepare, then normalize) and serving's (preprocess) still agree with each other.
        assert np.allclose(preprocessing.normalize(mapped_prepared, spec), mapped_input, atol=1e-6)
        assert not np.allclose(mapped_input, plain_input)
        assert np.array_equal(prepare_image(cell, spec), plain_prepared)  # and undone after the block
