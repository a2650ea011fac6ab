"""The export gate: an exported model must score real decoded images as the PyTorch model does.

The ONNX side preprocesses with the spec embedded in the ONNX file's metadata (exactly what the server will
do), the PyTorch side with the training spec; so a preprocessing mismatch fails the gate, not only a
numerical difference in the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inspection.batching import preprocessed_batches
from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec
from models.classifier import DefectClassifier
from models.hybrid import HybridModel
from models.onnx_runtime import OnnxScorer

# Anomaly maps are in [0, 1] and only drawn, as 8-bit images: within one gray level they look the same. Each map is
# divided by its own peak, so on a part where nothing raises the defect logit (a peak near 0) float noise is magnified:
# an ELPV good cell with a peak logit of 0.0014 differed by 0.00101 between ONNX Runtime and PyTorch (AVX-512 cores),
# over a bar of 0.001 that refused the export, while its probabilities agreed to 3.5e-6.
MAP_TOLERANCE = 1 / 255


@dataclass(frozen=True)
class ParityResult:
    """How closely ONNX Runtime reproduced PyTorch on `n_images` images (max over both probability outputs),
    and over the anomaly maps when the export has them (`map_max_abs_diff` None otherwise)."""

    n_images: int
    max_abs_diff: float
    mean_abs_diff: float
    tolerance: float
    passed: bool
    map_max_abs_diff: float | None = None
    map_tolerance: float = MAP_TOLERANCE


class ParityError(InspectionError):
    """The exported model does not reproduce the PyTorch model within tolerance."""


def torch_outputs(
    model: DefectClassifier | HybridModel, spec: PreprocessSpec, images: Sequence[np.ndarray], batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(defect probability (N,), type probabilities (N, K), anomaly maps (N, S, S)) from PyTorch, in eval mode, on
    decoded images."""
    was_training = model.training
    model.eval()
    defects: list[np.ndarray] = []
    types: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for batch in preprocessed_batches(images, spec, batch_size):
                output = model(torch.from_numpy(batch))
                defects.append(output.defect_probability.numpy())
                types.append(output.type_probabilities.numpy())
                maps.append(output.anomaly_map[:, 0].numpy())
    finally:
        model.train(was_training)
    return np.concatenate(defects), np.concatenate(types), np.concatenate(maps)


def _spec_differences(trained: PreprocessSpec, embedded: PreprocessSpec) -> str:
    fields = [k for k, v in trained.to_dict().items() if embedded.to_dict().get(k) != v]
    return f"; embedded preprocessing differs from training's in: {', '.join(fields)}" if fields else ""


def check_parity(
    model: DefectClassifier | HybridModel,
    spec: PreprocessSpec,
    onnx_path: Path,
    images: Sequence[np.ndarray],
    tolerance: float = 1e-4,
    batch_size: int = 4,
    map_tolerance: float = MAP_TOLERANCE,
) -> ParityResult:
    """Score `images` with PyTorch (training `spec`) and with the ONNX file (its embedded spec); raise if apart.

    Raises ParityError when any defect or type probability differs by more than `tolerance`, when the export's
    anomaly map (if it has one) differs anywhere by more than `map_tolerance`, or when the ONNX file cannot
    score the images with its own embedded preprocessing.
    """
    if not images:
        raise ValueError("parity needs at least one image")
    try:
        scorer = OnnxScorer(onnx_path)
        onnx_defect, onnx_types, onnx_maps = scorer.score_images_with_maps(images, batch_size=batch_size)
    except InspectionError as exc:
        raise ParityError(f"the export cannot score images with its own embedded preprocessing: {exc}") from exc
    torch_defect, torch_types, torch_maps = torch_outputs(model, spec, images, batch_size=batch_size)
    if onnx_types.shape != torch_types.shape:
        raise ParityError(
            f"{onnx_path}: type probabilities have shape {onnx_types.shape}, PyTorch gives {torch_types.shape}"
        )
    diffs = np.concatenate(
        [np.abs(onnx_defect.astype(np.float64) - torch_defect), np.abs(onnx_types - torch_types).ravel()]
    )
    map_diff = None
    if onnx_maps is not None:
        if onnx_maps.shape != torch_maps.shape:
            raise ParityError(
                f"{onnx_path}: anomaly maps have shape {onnx_maps.shape}, PyTorch gives {torch_maps.shape}"
            )
        map_diff = float(np.abs(onnx_maps.astype(np.float64) - torch_maps).max())
    maps_pass = map_diff is None or map_diff <= map_tolerance
    result = ParityResult(
        n_images=len(images),
        max_abs_diff=float(diffs.max()),
        mean_abs_diff=float(diffs.mean()),
        tolerance=tolerance,
        passed=bool(diffs.max() <= tolerance) and maps_pass,
        map_max_abs_diff=map_diff,
        map_tolerance=map_tolerance,
    )
    if not result.passed:
        maps = "" if map_diff is None else f"; anomaly maps by up to {map_diff:.3g} (tolerance {map_tolerance:g})"
        raise ParityError(
            f"{onnx_path}: ONNX Runtime and PyTorch disagree by up to {result.max_abs_diff:.3g} "
            f"(mean {result.mean_abs_diff:.3g}) over {result.n_images} images, tolerance {tolerance:g}{maps}"
            f"{_spec_differences(spec, scorer.spec)}"
        )
    return result
