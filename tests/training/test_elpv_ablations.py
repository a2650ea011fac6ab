"""The ELPV ablations the bench can run (benchmarks.elpv_ablations): each changes what it says, and only while
it is in force."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import training.kinds.classifier as classifier_kind
import training.trainer as trainer
from benchmarks.elpv_ablations import MIXUP_ALPHA, GeneralizedMeanPool, ablation, mixed, unanimous
from datasets.layout import ImageRecord
from models.classifier import DefectClassifier


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
    with ablation("unanimous-training"):
        assert classifier_kind._prepare_data is not prepare
    assert trainer._batch is batch and classifier_kind._prepare_data is prepare
