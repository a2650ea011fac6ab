"""Ablations of the ELPV classifier that are not product options (docs/elpv.md): each changes one thing for the
length of one `tools.experiments.elpv_variant` run (`--ablation NAME`), so a finding can be reproduced without
shipping a knob that did not earn its place.

- `gem-pooling`: generalized-mean pooling (p = 3) instead of the global average before the heads. A small crack
  raises few positions of the last feature map, and GeM weighs those more than a mean does. Every classifier built
  during the run pools this way, one rebuilt from the run's checkpoint included.
- `unanimous-training`: the classifier is trained only on the cells whose annotators all agreed (defect
  probability 0 or 1). Validation and test keep every cell, so the figures compare with the other runs.
- `feature-mixup`: manifold mixup on the cached trunk features. Each fine-tune batch is mixed with itself
  shuffled, lambda ~ Beta(0.4, 0.4) per image folded to >= 0.5, and so is the defect target; the defect-type
  target stays the dominant image's. A regularizer for a small data set, at no extra forward pass.
- `clahe`: contrast-limited adaptive histogram equalization (clip 2, 8x8 tiles) of every gray image before it is
  resized, in training and in evaluation alike. EL brightness differs from module to module and across a cell;
  local equalization could make a faint crack stand out wherever it lies.
- `contrast-stretch`: every gray image stretched linearly so its 1st and 99th percentiles become 0 and 255: the
  brightness differences between modules removed, the local contrast left as it is.
- `training-half`, `training-quarter`: the classifier trains on a random half (a quarter) of the training split,
  drawn per label with the run's seed; validation and test stay whole. Points of a learning curve: how much the
  figures move with the amount of labeled data, and so how much more data a goal would need at that rate.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

import inspection.preprocessing as preprocessing
import training.kinds.classifier as classifier_kind
import training.trainer as trainer
from datasets.layout import ImageRecord
from inspection.progress import console
from models.classifier import DefectClassifier

AGREEMENT_KEY = "defect_probability"  # the ELPV importer's share of "defective" votes per cell
MIXUP_ALPHA = 0.4  # Beta(alpha, alpha): most mixes stay close to one image, a few are near halves


class GeneralizedMeanPool(nn.Module):
    """(N, C, H, W) -> (N, C, 1, 1): (mean of x^p)^(1/p). p = 1 is the average, p -> infinity the maximum."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # The clamp keeps pow defined; the last feature map is non-negative after its ReLU6 anyway.
        return features.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p)


@contextmanager
def gem_pooling() -> Iterator[None]:
    original = DefectClassifier.__init__

    def pooled_by_gem(self: DefectClassifier, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.pool = GeneralizedMeanPool()  # type: ignore[assignment]

    DefectClassifier.__init__ = pooled_by_gem  # type: ignore[method-assign]
    try:
        yield
    finally:
        DefectClassifier.__init__ = original  # type: ignore[method-assign]


def unanimous_share(share: float | None) -> bool:
    """Whether a vote share says every annotator gave the same verdict (none recorded: not known to be)."""
    return share is not None and (float(share) <= 0.0 or float(share) >= 1.0)


def unanimous(record: ImageRecord) -> bool:
    """Whether every annotator gave the cell the same verdict."""
    return unanimous_share(record.meta.get(AGREEMENT_KEY))


@contextmanager
def training_records(choose: Callable[[list[ImageRecord], int], list[ImageRecord]], name: str) -> Iterator[None]:
    """The classifier trains on `choose(the training split's records, the run's seed)`; validation and test stay
    whole, so the figures compare with the other runs."""
    original = classifier_kind._prepare_data

    def prepare_chosen(model: Any, job: Any, defect_types: list[str], device: torch.device) -> Any:
        kept = choose(job.parts["train"], job.config.seed)
        console.print(f"ablation {name}: training on {len(kept)} of {len(job.parts['train'])} images")
        job = dataclasses.replace(job, parts={**job.parts, "train": kept})
        return original(model, job, defect_types, device)

    classifier_kind._prepare_data = prepare_chosen
    try:
        yield
    finally:
        classifier_kind._prepare_data = original


def unanimous_training() -> AbstractContextManager[None]:
    return training_records(lambda records, _seed: [r for r in records if unanimous(r)], "unanimous-training")


def label_stratified_share(records: list[ImageRecord], fraction: float, seed: int) -> list[ImageRecord]:
    """`fraction` of each label's records (rounded, at least one), drawn with `seed`, in their original order."""
    drawn: set[int] = set()
    for label in sorted({record.label for record in records}):
        indices = [i for i, record in enumerate(records) if record.label == label]
        drawn.update(random.Random(f"{seed}:{label}").sample(indices, max(1, round(fraction * len(indices)))))
    return [record for i, record in enumerate(records) if i in drawn]


def training_share(fraction: float, name: str) -> AbstractContextManager[None]:
    return training_records(lambda records, seed: label_stratified_share(records, fraction, seed), name)


def mixed(
    features: torch.Tensor, is_defect: torch.Tensor, types: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch mixed with its own shuffle: features and defect targets by lambda >= 0.5, types the dominant's.

    Draws from torch's global generator, which the trainer seeds every epoch: a rerun mixes the same pairs."""
    n = features.shape[0]
    draws = torch.distributions.Beta(MIXUP_ALPHA, MIXUP_ALPHA).sample((n,))
    lam = torch.maximum(draws, 1.0 - draws).to(features)
    partner = torch.randperm(n).to(features.device)
    shape = (n,) + (1,) * (features.dim() - 1)
    mixed_features = lam.reshape(shape) * features + (1.0 - lam.reshape(shape)) * features[partner]
    return mixed_features, lam * is_defect + (1.0 - lam) * is_defect[partner], types


@contextmanager
def feature_mixup() -> Iterator[None]:
    original = trainer._batch

    def mixed_batch(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return mixed(*original(*args))

    trainer._batch = mixed_batch
    try:
        yield
    finally:
        trainer._batch = original


CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 8)
STRETCH_PERCENTILES = (1.0, 99.0)


def equalized_locally(gray: np.ndarray) -> np.ndarray:
    """uint8 HxW -> uint8 HxW after CLAHE."""
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES).apply(gray)


def stretched(gray: np.ndarray) -> np.ndarray:
    """uint8 HxW -> uint8 HxW with its 1st..99th percentile spread over 0..255 (a flat image stays as it is)."""
    low, high = np.percentile(gray, STRETCH_PERCENTILES)
    if high <= low:
        return gray
    return np.clip((gray.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)


@contextmanager
def gray_levels_mapped(mapping: Callable[[np.ndarray], np.ndarray], name: str) -> Iterator[None]:
    """Every gray image mapped before it is resized, wherever the shared preprocessing runs (training, evaluation,
    the export's parity check). Color images are left alone: ELPV is gray, and the run says so if it is not."""
    original = preprocessing._resized
    seen = {"gray": 0, "color": 0}

    def mapped_then_resized(image: np.ndarray, spec: preprocessing.PreprocessSpec) -> np.ndarray:
        if image.ndim == 2:
            seen["gray"] += 1
            image = mapping(image)
        else:
            seen["color"] += 1
        return original(image, spec)

    preprocessing._resized = mapped_then_resized
    try:
        yield
    finally:
        preprocessing._resized = original
        console.print(f"ablation {name}: mapped {seen['gray']} gray images, left {seen['color']} color images alone")


def clahe() -> AbstractContextManager[None]:
    return gray_levels_mapped(equalized_locally, "clahe")


def contrast_stretch() -> AbstractContextManager[None]:
    return gray_levels_mapped(stretched, "contrast-stretch")


ABLATIONS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "gem-pooling": gem_pooling,
    "unanimous-training": unanimous_training,
    "feature-mixup": feature_mixup,
    "clahe": clahe,
    "contrast-stretch": contrast_stretch,
}
# The learning curve's points: the share of the training split each of these ablations trains on.
TRAINING_SHARES = {"training-half": 0.5, "training-quarter": 0.25}
ABLATIONS.update({name: partial(training_share, share, name) for name, share in TRAINING_SHARES.items()})


def ablation(name: str | None) -> AbstractContextManager[None]:
    """The named ablation, in force inside the `with` block; None: nothing changed."""
    return nullcontext() if name is None else ABLATIONS[name]()
