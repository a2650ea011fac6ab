"""Tracing a model to ONNX with the inspection export contract, for every kind that is not the bare classifier.

Input `image`, batch dynamic, HxW fixed by the spec, TF "same" pads made static, output shapes declared,
`onnx.checker` run, caller metadata embedded as `inspection.*` properties; written atomically.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from inspection.atomic import atomic_target
from inspection.preprocessing import PreprocessSpec
from models.onnx_export import OPSET, _set_metadata, quiet_legacy_exporter, static_same_padding
from models.onnx_runtime import INPUT_NAME, MAP_OUTPUT, OUTPUT_NAMES


def _declare_output_shapes(proto: onnx.ModelProto, image_size: int, type_count: int) -> None:
    """Declare (batch, 1, S, S) for the map, (batch, K) for type probabilities, (batch,) for the rest: the tracer
    leaves the map's HxW symbolic (its Resize reads shapes)."""
    declared: dict[str, list[str | int]] = {
        MAP_OUTPUT: ["batch", 1, image_size, image_size],
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
    exportable = static_same_padding(copy.deepcopy(module).eval(), spec.image_size)
    dummy = torch.zeros(1, 3, spec.image_size, spec.image_size)
    batch_axis = {0: "batch"}
    path = Path(path)
    with atomic_target(path) as tmp, quiet_legacy_exporter(), warnings.catch_warnings():
        # Also the tracer's note that the grid size is read from a shape (fixed by the spec: a constant is right).
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
