"""Scoring dataset images with the full model through the shared preprocessing (what serving will do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from datasets.layout import ImageRecord
from inspection.batching import batched
from inspection.imaging import read_image
from inspection.preprocessing import PreprocessSpec, preprocess
from models.classifier import DefectClassifier
from models.hybrid import HybridModel
from models.trunk_runtime import frozen_on_onnx_runtime


@dataclass(frozen=True)
class Predictions:
    """Per-image defect probability (N,) and defect-type probabilities (N, K)."""

    defect_probability: np.ndarray
    type_probabilities: np.ndarray


class _Probabilities(nn.Module):
    """The network's two probability outputs as one (N, 1 + K) tensor: all that scoring reads, and one graph output
    on ONNX Runtime (the unused anomaly map is left out of the traced graph)."""

    def __init__(self, model: DefectClassifier | HybridModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.model(images)
        return torch.cat([output.defect_probability[:, None], output.type_probabilities], dim=1)


def _scorer(
    model: DefectClassifier | HybridModel, spec: PreprocessSpec, device: torch.device
) -> Callable[[np.ndarray], np.ndarray]:
    """Preprocessed batch -> (N, 1 + K) probabilities. A classifier on a CPU runs on ONNX Runtime, the engine that
    will serve it (on ELPV its validation and test passes took 12 + 16 s in eager PyTorch; models/trunk_runtime.py).
    On another device, and for a hybrid passed here (the hybrid kind scores its own outputs on ONNX Runtime,
    training/kinds/hybrid.py), PyTorch."""
    probabilities = _Probabilities(model)
    if device.type == "cpu" and isinstance(model, DefectClassifier):
        return frozen_on_onnx_runtime(probabilities, spec.image_size, torch.get_num_threads())

    @torch.no_grad()
    def in_torch(inputs: np.ndarray) -> np.ndarray:
        return probabilities(torch.from_numpy(inputs).to(device)).cpu().numpy()

    return in_torch


def predict_records(
    model: DefectClassifier | HybridModel,
    records: Sequence[ImageRecord],
    spec: PreprocessSpec,
    device: torch.device,
    batch_size: int = 32,
    advance: Callable[[int], None] | None = None,
) -> Predictions:
    """Decode, preprocess and score every record with the whole network in eval mode."""
    model.eval()
    score = _scorer(model, spec, device)
    outputs = []
    for batch in batched(records, batch_size):
        outputs.append(score(np.stack([preprocess(read_image(r.path), spec) for r in batch])))
        if advance:
            advance(len(batch))
    scored = np.concatenate(outputs)
    return Predictions(scored[:, 0], scored[:, 1:])
