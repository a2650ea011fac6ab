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
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from inspection.atomic import atomic_target
from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec, preprocess
from models.anomaly import PatchCore, score_images
from models.onnx_export import OPSET, _set_metadata, _static_same_padding
from models.onnx_parity import ParityError
from models.onnx_runtime import INPUT_NAME, decode_metadata

ANOMALY_OUTPUT_NAMES = ("anomaly_score", "anomaly_map")
MODEL_KIND = "patchcore"


def _declare_output_shapes(proto: onnx.ModelProto, image_size: int) -> None:
    """Declare (batch,) and (batch, 1, S, S): the tracer leaves the map's HxW symbolic (its Resize reads shapes)."""
    declared: dict[str, list[str | int]] = {
        ANOMALY_OUTPUT_NAMES[0]: ["batch"],
        ANOMALY_OUTPUT_NAMES[1]: ["batch", 1, image_size, image_size],
    }
    for output in proto.graph.output:
        shape = output.type.tensor_type.shape
        shape.ClearField("dim")
        for size in declared[output.name]:
            dim = shape.dim.add()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size


def export_anomaly(model: PatchCore, spec: PreprocessSpec, path: Path, metadata: dict[str, Any]) -> Path:
    """Export a fitted PatchCore to ONNX (opset 17, batch dynamic), run onnx.checker, embed metadata; atomic."""
    if not model.is_fitted:
        raise ValueError("cannot export PatchCore with an empty memory bank: fit it on good images first")
    # A copy: the caller's model keeps its modules (the static pads are only right for spec.image_size).
    exportable = _static_same_padding(copy.deepcopy(model).eval(), spec.image_size)
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
            output_names=list(ANOMALY_OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: batch_axis, **{name: batch_axis for name in ANOMALY_OUTPUT_NAMES}},
        )
        proto = onnx.load(str(tmp))
        _declare_output_shapes(proto, spec.image_size)
        onnx.checker.check_model(proto, full_check=True)
        base = {"preprocess": spec.to_dict(), "model_kind": MODEL_KIND, "anomaly": model.config()}
        _set_metadata(proto, {**base, **metadata})
        onnx.save(proto, str(tmp))
    return path


def onnx_anomaly_scores(
    path: Path, images: Sequence[np.ndarray], batch_size: int = 4, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, PreprocessSpec]:
    """Score decoded images with the ONNX file and its embedded preprocessing: (scores, maps (N, H, W), spec)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    metadata = decode_metadata(session.get_modelmeta().custom_metadata_map)
    if "preprocess" not in metadata:
        raise InspectionError(f"{path}: no 'inspection.preprocess' metadata; not an inspection export")
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
