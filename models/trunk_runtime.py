"""A frozen part of the network on ONNX Runtime, for the passes training makes over every image on a CPU.

The classifier's training runs its frozen lower stages once per augmented view of every training image
(training/features.py), and PatchCore runs its frozen trunk over every good training image and every validation
and test image (training/kinds/anomaly.py); on a CPU those passes are most of what they cost. The trained
classifier's validation and test scoring runs the same way (training/predict.py), and so does the
hybrid's (training/kinds/hybrid.py, through models/hybrid_export.py). Eager PyTorch runs
timm's TF-"same"-padded convolutions with a pad computed per call and no fused kernels; the same stages exported
to an in-memory ONNX graph and run by ONNX Runtime take several times less CPU
(docs/decisions/0009-frozen-trunk-on-onnx-runtime.md).
The outputs agree to within float16's resolution, the precision the classifier's cache keeps.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from models.onnx_export import OPSET, quiet_legacy_exporter, static_same_padding

_INPUT, _OUTPUT = "images", "features"


def frozen_on_onnx_runtime(module: nn.Module, image_size: int, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """`module` (frozen: a trunk, or a whole trained network; images in, one tensor out; its weights are copied now)
    as a function float32 (N, 3, S, S) -> float32 output, run by an ONNX Runtime session with `threads` intra-op
    threads."""
    # A copy: the caller's module keeps its modules (the static pads are only right for this image size).
    exportable = static_same_padding(copy.deepcopy(module).eval(), image_size)
    with tempfile.TemporaryDirectory(prefix="trunk-") as folder, quiet_legacy_exporter():
        path = Path(folder) / "trunk.onnx"
        torch.onnx.export(
            exportable,
            (torch.zeros(1, 3, image_size, image_size),),
            str(path),
            dynamo=False,  # the TorchScript exporter, as the served model's export
            opset_version=OPSET,
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}},
        )
        graph = path.read_bytes()
    session = training_session(graph, threads)

    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([_OUTPUT], {_INPUT: np.ascontiguousarray(images, dtype=np.float32)})[0])

    return run


def training_session(graph: bytes, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for a pass training makes over many images, with `threads` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Between runs the caller decodes and augments the next batch on the same cores; spinning ORT threads would
    # take them. The classifier's 3-view pass over 768 ELPV cells: 8.8-9.4 s without spinning, 9.3-10.4 with.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
