"""Exporting PatchCore to ONNX, and proving ONNX Runtime reproduces its score and map on real images.

Same contract as the classifier export (models.onnx_export): input `image`, batch dynamic, HxW fixed by the
spec, TF "same" pads made static, preprocessing and caller metadata embedded as `inspection.*` properties.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from inspection.atomic import atomic_target
from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec, preprocess
from models.anomaly import PatchCore, score_images
from models.onnx_export import OPSET, _set_metadata, _static_same_padding
from models.onnx_parity import ParityError
from models.onnx_runtime import INPUT_NAME, OUTPUT_NAMES, decode_metadata

ANOMALY_OUTPUT_NAMES = ("anomaly_score", "anomaly_map")
MODEL_KIND = "patchcore"
SERVED_ANOMALY_MAP = "anomaly_map"
SERVED_ANOMALY_SCORE = "anomaly_score"
# What the server reads (the classifier's contract) first, then the map and the raw distance.
SERVED_OUTPUT_NAMES = (*OUTPUT_NAMES, SERVED_ANOMALY_MAP, SERVED_ANOMALY_SCORE)
SERVED_THRESHOLD = 0.5  # sigmoid((score - threshold) / scale) crosses 0.5 exactly at the distance threshold


def _declare_output_shapes(proto: onnx.ModelProto, image_size: int, type_count: int) -> None:
    """Declare (batch, 1, S, S) for the map, (batch, K) for type probabilities, (batch,) for the rest: the tracer
    leaves the map's HxW symbolic (its Resize reads shapes)."""
    declared: dict[str, list[str | int]] = {
        SERVED_ANOMALY_MAP: ["batch", 1, image_size, image_size],
        OUTPUT_NAMES[1]: ["batch", type_count],
    }
    for output in proto.graph.output:
        shape = output.type.tensor_type.shape
        shape.ClearField("dim")
        for size in declared.get(output.name, ["batch"]):
            dim = shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def export_traced(
    module: nn.Module,
    spec: PreprocessSpec,
    path: Path,
    output_names: Sequence[str],
    metadata: dict[str, Any],
    type_count: int = 1,
) -> Path:
    """Trace `module` to ONNX (opset 17, batch dynamic), declare the output shapes, run onnx.checker, embed
    metadata; atomic write. Shared by PatchCore, its served wrapper and the hybrid."""
    # A copy: the caller's model keeps its modules (the static pads are only right for spec.image_size).
    exportable = _static_same_padding(copy.deepcopy(module).eval(), spec.image_size)
    dummy = torch.zeros(1, 3, spec.image_size, spec.image_size)
    batch_axis = {0: "batch"}
    path = Path(path)
    with atomic_target(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The same known, harmless exporter noise export_classifier silences, plus the tracer's note that
        # the grid size is read from a shape (it is fixed by the spec, so a constant is right).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            exportable,
            (dummy,),
            str(tmp),
            dynamo=False,  # TorchScript exporter, as export_classifier: traces the eval graph as is
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_axes={INPUT_NAME: batch_axis, **{name: batch_axis for name in output_names}},
        )
        proto = onnx.load(str(tmp))
        _declare_output_shapes(proto, spec.image_size, type_count)
        onnx.checker.check_model(proto, full_check=True)
        _set_metadata(proto, metadata)
        onnx.save(proto, str(tmp))
    return path


def export_anomaly(model: PatchCore, spec: PreprocessSpec, path: Path, metadata: dict[str, Any]) -> Path:
    """Export a fitted PatchCore to ONNX (opset 17, batch dynamic), run onnx.checker, embed metadata; atomic."""
    if not model.is_fitted:
        raise ValueError("cannot export PatchCore with an empty memory bank: fit it on good images first")
    base = {"preprocess": spec.to_dict(), "model_kind": MODEL_KIND, "anomaly": model.config()}
    return export_traced(model, spec, path, ANOMALY_OUTPUT_NAMES, {**base, **metadata})


def _session(path: Path, threads: int | None) -> tuple[ort.InferenceSession, dict[str, Any]]:
    """A CPU session on an inspection export and its decoded metadata; refuses files without preprocessing."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    metadata = decode_metadata(session.get_modelmeta().custom_metadata_map)
    if "preprocess" not in metadata:
        raise InspectionError(f"{path}: no 'inspection.preprocess' metadata; not an inspection export")
    return session, metadata


def onnx_anomaly_scores(
    path: Path, images: Sequence[np.ndarray], batch_size: int = 4, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, PreprocessSpec]:
    """Score decoded images with the ONNX file and its embedded preprocessing: (scores, maps (N, H, W), spec)."""
    session, metadata = _session(path, threads)
    outputs = [node.name for node in session.get_outputs()]
    if list(ANOMALY_OUTPUT_NAMES) != outputs[: len(ANOMALY_OUTPUT_NAMES)]:
        raise InspectionError(f"{path}: expected outputs {list(ANOMALY_OUTPUT_NAMES)}, found {outputs}")
    spec = PreprocessSpec.from_dict(metadata["preprocess"])
    scores: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([preprocess(image, spec) for image in images[start : start + batch_size]])
        score, anomaly_map = session.run(list(ANOMALY_OUTPUT_NAMES), {INPUT_NAME: batch})
        scores.append(np.asarray(score))
        maps.append(np.asarray(anomaly_map)[:, 0])
    return np.concatenate(scores), np.concatenate(maps), spec


@dataclass(frozen=True)
class AnomalyParityResult:
    """How closely ONNX Runtime reproduced PyTorch on `n_images` images, per output."""

    n_images: int
    score_max_abs_diff: float
    map_max_abs_diff: float
    max_relative_diff: float  # largest difference over the largest |PyTorch value| of that output
    passed: bool


def check_anomaly_parity(
    model: PatchCore,
    spec: PreprocessSpec,
    onnx_path: Path,
    images: Sequence[np.ndarray],
    rtol: float = 1e-3,
    batch_size: int = 4,
) -> AnomalyParityResult:
    """Score `images` with PyTorch (training `spec`) and the ONNX file (its embedded spec); raise if apart.

    Distances are unnormalized, so the tolerance is relative to each output's largest PyTorch value.
    """
    if not images:
        raise ValueError("parity needs at least one image")
    try:
        onnx_score, onnx_map, embedded = onnx_anomaly_scores(onnx_path, images, batch_size=batch_size)
    except InspectionError as exc:
        raise ParityError(f"the export cannot score images with its own embedded preprocessing: {exc}") from exc
    torch_score, torch_map = score_images(model, images, spec, batch_size=batch_size)
    if onnx_map.shape != torch_map.shape:
        raise ParityError(f"{onnx_path}: anomaly maps have shape {onnx_map.shape}, PyTorch gives {torch_map.shape}")
    score_diff = float(np.abs(onnx_score.astype(np.float64) - torch_score).max())
    map_diff = float(np.abs(onnx_map.astype(np.float64) - torch_map).max())
    # A fitted bank makes 0 distances rare; the floor keeps an all-zero output from dividing by zero.
    relative = max(
        score_diff / max(float(np.abs(torch_score).max()), 1e-6),
        map_diff / max(float(np.abs(torch_map).max()), 1e-6),
    )
    result = AnomalyParityResult(len(images), score_diff, map_diff, relative, passed=relative <= rtol)
    if not result.passed:
        changed = [k for k, v in spec.to_dict().items() if embedded.to_dict().get(k) != v]
        hint = f"; embedded preprocessing differs from training's in: {', '.join(changed)}" if changed else ""
        raise ParityError(
            f"{onnx_path}: ONNX Runtime and PyTorch disagree over {len(images)} images: score by up to "
            f"{score_diff:.3g}, map by up to {map_diff:.3g} (relative {relative:.3g}, tolerance {rtol:g}){hint}"
        )
    return result


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
    session, metadata = _session(path, threads)
    outputs = {node.name for node in session.get_outputs()}
    if not set(SERVED_OUTPUT_NAMES) <= outputs:
        raise InspectionError(f"{path}: expected outputs {list(SERVED_OUTPUT_NAMES)}, found {sorted(outputs)}")
    spec = PreprocessSpec.from_dict(metadata["preprocess"])
    collected: dict[str, list[np.ndarray]] = {name: [] for name in SERVED_OUTPUT_NAMES}
    for start in range(0, len(images), batch_size):
        batch = np.stack([preprocess(image, spec) for image in images[start : start + batch_size]])
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
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack([preprocess(image, spec) for image in images[start : start + batch_size]]))
        for name, value in zip(SERVED_OUTPUT_NAMES, model(batch), strict=True):
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
