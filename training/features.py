"""Frozen-trunk feature cache: the reason a fine-tune fits in minutes on 2 CPU cores.

The lower backbone stages are frozen, so their output for a given input never changes during training. We run
them once per augmented view of each training image (view 0 is the clean image) and train only the upper
stages and heads on the cached tensors; on a GPU the same code is simply faster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from datasets.layout import ImageRecord
from inspection.batching import batched
from inspection.preprocessing import PreprocessSpec, normalize
from models.classifier import DefectClassifier
from training.augment import Augmenter
from training.data import load_prepared


@torch.no_grad()
def trunk_features(
    model: DefectClassifier,
    images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    device: torch.device,
    batch_size: int,
    augmenter: Augmenter | None = None,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(N, C, H, W) float16 trunk output for prepared uint8 images, optionally augmented first."""
    model.trunk.eval()
    chunks = []
    for batch in batched(images, batch_size):
        if augmenter is not None:
            batch = [augmenter(image) for image in batch]
        inputs = torch.from_numpy(normalize(np.stack(batch), spec)).to(device)
        # float16 halves the cache; the trunk output is post-BN activations of modest range, so nothing is lost
        # that the fine-tune could notice.
        chunks.append(model.trunk(inputs).to("cpu", torch.float16))
        if advance:
            advance(len(batch))
    return torch.cat(chunks)


def cached_views(
    model: DefectClassifier,
    records: Sequence[ImageRecord],
    spec: PreprocessSpec,
    device: torch.device,
    views: int,
    augmenter: Augmenter | None,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(views, N, C, H, W) trunk features: view 0 clean, the others augmented."""
    images = [load_prepared(record, spec) for record in records]
    stacks = [trunk_features(model, images, spec, device, batch_size, None, advance)]
    for _ in range(1, views):
        stacks.append(trunk_features(model, images, spec, device, batch_size, augmenter, advance))
    return torch.stack(stacks)
