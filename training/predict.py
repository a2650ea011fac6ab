"""Scoring dataset images with the full model through the shared preprocessing (what serving will do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from datasets.layout import ImageRecord
from inspection.batching import batched
from inspection.imaging import read_image
from inspection.preprocessing import PreprocessSpec, preprocess
from models.classifier import DefectClassifier
from models.hybrid import HybridModel


@dataclass(frozen=True)
class Predictions:
    """Per-image defect probability (N,) and defect-type probabilities (N, K)."""

    defect_probability: np.ndarray
    type_probabilities: np.ndarray


@torch.no_grad()
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
    probabilities, types = [], []
    for batch in batched(records, batch_size):
        inputs = np.stack([preprocess(read_image(r.path), spec) for r in batch])
        output = model(torch.from_numpy(inputs).to(device))
        probabilities.append(output.defect_probability.cpu().numpy())
        types.append(output.type_probabilities.cpu().numpy())
        if advance:
            advance(len(batch))
    return Predictions(np.concatenate(probabilities), np.concatenate(types))
