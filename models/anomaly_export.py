"""PatchCore served by the classifier's server: the wrapper module, its ONNX export and its parity check.

The wrapper maps a distance onto `defect_probability` (0.5 = the calibrated distance threshold), so the same
server, engine and dashboard serve it; ONNX Runtime must reproduce its probability, distance and map on real
images before an export is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from inspection.batching import preprocessed_batches
from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec
from models.anomaly import PatchCore
from models.onnx_parity import ParityError
from models.onnx_runtime import INPUT_NAME, MAP_OUTPUT, OUTPUT_NAMES, OnnxScorer
from models.onnx_trace import export_traced

MODEL_KIND = "patchcore"
SERVED_ANOMALY_MAP = MAP_OUTPUT
SERVED_ANOMALY_SCORE = "anomaly_score"
# What the server reads (the classifier's contract) first, then the map and the raw distance.
SERVED_OUTPUT_NAMES = (*OUTPUT_NAMES, SERVED_ANOMALY_MAP, SERVED_ANOMALY_SCORE)
SERVED_THRESHOLD = 0.5  # sigmoid((score - threshold) / scale) crosses 0.5 exactly at the distance threshold


class ServedAnomalyOutput(NamedTuple):
    """The classifier's serving contract plus the map and the raw distance.

    defect_probability (N,): sigmoid((score - threshold) / scale), 0.5 exactly at the calibrated threshold;
    type_probabilities (N, 1): ones (the one type, "anomaly"); anomaly_map (N, 1, S, S): distance / (2 *
    threshold) clipped to [0, 1], so 0.5 is the threshold level; anomaly_score (N,): the distance itself.
    """

    defect_probability: torch.Tensor
    type_probabilities: torch.Tensor
    anomaly_map: torch.Tensor
    anomaly_score: torch.Tensor


class ServedAnomaly(nn.Module):
    """PatchCore wrapped so the classifier's server serves it unchanged (see ServedAnomalyOutput)."""

    def __init__(self, patchcore: PatchCore, threshold: float, scale: float):
        super().__init__()
        if threshold <= 0 or scale <= 0:
            raise ValueError(f"threshold and scale must be positive distances, got {threshold} and {scale}")
        self.patchcore = patchcore
        self.threshold = float(threshold)
        self.scale = float(scale)

    def forward(self, images: torch.Tensor) -> ServedAnomalyOutput:
        score, anomaly_map = self.patchcore(images)
        probability = torch.sigmoid((score - self.threshold) / self.scale)
        types = torch.ones_like(probability).unsqueeze(1)
        normalized = (anomaly_map / (2.0 * self.threshold)).clamp(0.0, 1.0)
        return ServedAnomalyOutput(probability, types, normalized, score)

    def metadata(self) -> dict[str, Any]:
        """The `anomaly` block of the ONNX metadata: how served numbers relate to distances."""
        return {
            **self.patchcore.config(),
            "distance_threshold": self.threshold,
            "score_scale": self.scale,
            "map_scale": 2.0 * self.threshold,
        }


def export_served_anomaly(model: ServedAnomaly, spec: PreprocessSpec, path: Path, metadata: dict[str, Any]) -> Path:
    """Export the served wrapper (opset 17, batch dynamic), run onnx.checker, embed metadata; atomic write.

    The metadata's `threshold` is 0.5 (the probability scale); the distance threshold is under `anomaly`.
    """
    if not model.patchcore.is_fitted:
        raise ValueError("cannot export PatchCore with an empty memory bank: fit it on good images first")
    base = {
        "preprocess": spec.to_dict(),
        "model_kind": MODEL_KIND,
        "kind": "anomaly",
        "anomaly": model.metadata(),
        "threshold": SERVED_THRESHOLD,
    }
    return export_traced(model, spec, path, SERVED_OUTPUT_NAMES, {**metadata, **base})


def onnx_served_outputs(
    path: Path, images: Sequence[np.ndarray], batch_size: int = 4, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Every output of a served anomaly export on decoded images, through its embedded preprocessing."""
    scorer = OnnxScorer(path, threads)
    session, spec = scorer.session, scorer.spec
    outputs = {node.name for node in session.get_outputs()}
    if not set(SERVED_OUTPUT_NAMES) <= outputs:
        raise InspectionError(f"{path}: expected outputs {list(SERVED_OUTPUT_NAMES)}, found {sorted(outputs)}")
    collected: dict[str, list[np.ndarray]] = {name: [] for name in SERVED_OUTPUT_NAMES}
    for batch in preprocessed_batches(images, spec, batch_size):
        values = session.run(list(SERVED_OUTPUT_NAMES), {INPUT_NAME: batch})
        for name, value in zip(SERVED_OUTPUT_NAMES, values, strict=True):
            collected[name].append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in collected.items()}


@torch.inference_mode()
def served_outputs(
    model: ServedAnomaly, images: Sequence[np.ndarray], spec: PreprocessSpec, batch_size: int = 4
) -> dict[str, np.ndarray]:
    """The same outputs from PyTorch, through the training preprocessing."""
    collected: dict[str, list[np.ndarray]] = {name: [] for name in SERVED_OUTPUT_NAMES}
    for batch in preprocessed_batches(images, spec, batch_size):
        for name, value in zip(SERVED_OUTPUT_NAMES, model(torch.from_numpy(batch)), strict=True):
            collected[name].append(value.cpu().numpy())
    return {name: np.concatenate(values) for name, values in collected.items()}


@dataclass(frozen=True)
class ServedAnomalyParity:
    """ONNX Runtime vs PyTorch for a served anomaly export; `max_abs_diff` is on the served probability."""

    n_images: int
    max_abs_diff: float
    score_max_abs_diff: float
    map_max_abs_diff: float
    max_relative_diff: float
    verdict_disagreements: int
    passed: bool


def check_served_parity(
    model: ServedAnomaly,
    spec: PreprocessSpec,
    onnx_path: Path,
    images: Sequence[np.ndarray],
    rtol: float = 1e-3,
    probability_atol: float = 1e-3,
    batch_size: int = 4,
) -> ServedAnomalyParity:
    """Compare probability, map and distance of the export with PyTorch on `images`; raise ParityError if apart.

    A verdict may differ only for a part whose distance is within the tolerance of the threshold.
    """
    if not images:
        raise ValueError("parity needs at least one image")
    try:
        onnx_out = onnx_served_outputs(onnx_path, images, batch_size=batch_size)
    except InspectionError as exc:
        raise ParityError(f"the export cannot score images with its own embedded preprocessing: {exc}") from exc
    torch_out = served_outputs(model, images, spec, batch_size=batch_size)
    diff = {
        name: float(np.abs(onnx_out[name].astype(np.float64) - torch_out[name]).max()) for name in SERVED_OUTPUT_NAMES
    }
    torch_score = torch_out[SERVED_ANOMALY_SCORE]
    relative = diff[SERVED_ANOMALY_SCORE] / max(float(np.abs(torch_score).max()), 1e-6)
    relative = max(relative, diff[SERVED_ANOMALY_MAP])  # the served map is already on a [0, 1] scale
    probability = OUTPUT_NAMES[0]
    flipped = (onnx_out[probability] >= SERVED_THRESHOLD) != (torch_out[probability] >= SERVED_THRESHOLD)
    near = np.abs(torch_score - model.threshold) <= rtol * max(float(np.abs(torch_score).max()), 1e-6)
    disagreements = int(flipped.sum())
    passed = relative <= rtol and diff[probability] <= probability_atol and not (flipped & ~near).any()
    result = ServedAnomalyParity(
        len(images),
        diff[probability],
        diff[SERVED_ANOMALY_SCORE],
        diff[SERVED_ANOMALY_MAP],
        relative,
        disagreements,
        passed,
    )
    if not passed:
        raise ParityError(
            f"{onnx_path}: ONNX Runtime and PyTorch disagree over {len(images)} images: probability by up to "
            f"{diff[probability]:.3g}, distance by up to {diff[SERVED_ANOMALY_SCORE]:.3g}, map by up to "
            f"{diff[SERVED_ANOMALY_MAP]:.3g}; {disagreements} verdict(s) differ"
        )
    return result
