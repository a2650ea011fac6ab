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
from models.trunk_runtime import frozen_on_onnx_runtime
from training.augment import Augmenter
from training.data import load_prepared

TrunkRunner = Callable[[np.ndarray], torch.Tensor]
"""Normalized float32 (N, 3, S, S) batch -> float16 trunk features on the CPU: what the cache stores."""


def trunk_runner(model: DefectClassifier, spec: PreprocessSpec, device: torch.device) -> TrunkRunner:
    """How the frozen trunk runs while the cache is built: on a CPU by ONNX Runtime (several times faster than
    eager PyTorch there; models/trunk_runtime.py), on any other device by PyTorch."""
    model.trunk.eval()
    if device.type == "cpu":
        run = frozen_on_onnx_runtime(model.trunk, spec.image_size, torch.get_num_threads())
        # float16 halves the cache; the trunk output is post-BN activations of modest range, so nothing is lost
        # that the fine-tune could notice.
        return lambda inputs: torch.from_numpy(run(inputs)).to(torch.float16)

    @torch.no_grad()
    def on_device(inputs: np.ndarray) -> torch.Tensor:
        return model.trunk(torch.from_numpy(inputs).to(device)).to("cpu", torch.float16)

    return on_device


def trunk_features(
    run_trunk: TrunkRunner,
    images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    batch_size: int,
    augmenter: Augmenter | None = None,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(N, C, H, W) float16 trunk output for prepared uint8 images, optionally augmented first."""
    chunks = []
    for batch in batched(images, batch_size):
        if augmenter is not None:
            batch = [augmenter(image) for image in batch]
        chunks.append(run_trunk(normalize(np.stack(batch), spec)))
        if advance:
            advance(len(batch))
    return torch.cat(chunks)


def cached_views(
    run_trunk: TrunkRunner,
    records: Sequence[ImageRecord],
    spec: PreprocessSpec,
    views: int,
    augmenter: Augmenter | None,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """(views, N, C, H, W) trunk features: view 0 clean, the others augmented."""
    images = [load_prepared(record, spec) for record in records]
    stacks = [trunk_features(run_trunk, images, spec, batch_size, None, advance)]
    for _ in range(1, views):
        stacks.append(trunk_features(run_trunk, images, spec, batch_size, augmenter, advance))
    return torch.stack(stacks)
