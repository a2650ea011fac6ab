"""The ELPV ablations the bench can run (benchmarks.elpv_ablations): each changes what it says, and only while
it is in force."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from benchmarks.elpv_ablations import GeneralizedMeanPool, ablation, unanimous
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
