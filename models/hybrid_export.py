"""Exporting the hybrid to ONNX: one graph runs the classifier and PatchCore and fuses them (models.hybrid).

The served outputs keep the classifier's contract (defect_probability, type_probabilities, anomaly_map), so the
server and the classifier's parity gate (models.onnx_parity) take it unchanged; the two fused inputs follow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inspection.preprocessing import PreprocessSpec
from models.checkpoint import HybridBundle
from models.hybrid import HYBRID_KIND, HybridModel, HybridOutput
from models.onnx_runtime import INPUT_NAME
from models.onnx_trace import export_traced
from models.trunk_runtime import training_session

# Distances enter the fused probability scaled by a robust spread, so float32 differences between ONNX Runtime
# and PyTorch are amplified a little more than in the plain classifier: the anomaly export's tolerance.
HYBRID_PARITY_TOLERANCE = 1e-3


def export_hybrid(bundle: HybridBundle, path: Path, metadata: dict[str, Any]) -> Path:
    """Export the fused model (opset 17, batch dynamic), run onnx.checker, embed metadata; atomic write."""
    if not bundle.model.patchcore.is_fitted:
        raise ValueError("cannot export a hybrid whose PatchCore has an empty memory bank")
    base = {
        "preprocess": bundle.spec.to_dict(),
        "kind": HYBRID_KIND,
        "hybrid": {"fusion": bundle.model.fusion.to_dict(), "anomaly": bundle.model.patchcore.config()},
        "defect_types": bundle.defect_types,
        "threshold": bundle.threshold,
    }
    return export_traced(
        bundle.model,
        bundle.spec,
        path,
        HybridOutput._fields,
        {**metadata, **base},
        type_count=len(bundle.defect_types),
    )


def hybrid_on_onnx_runtime(
    model: HybridModel, spec: PreprocessSpec, threads: int
) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """`model` exported to an in-memory graph, as the server will run it, as a function preprocessed images
    (N, 3, S, S) -> its outputs in HybridOutput's order, on ONNX Runtime with `threads` intra-op threads."""
    type_count = model.classifier.type_head.out_features + 1  # the classifier's types, then "anomaly"
    with tempfile.TemporaryDirectory(prefix="hybrid-") as folder:
        path = export_traced(model, spec, Path(folder) / "hybrid.onnx", HybridOutput._fields, {}, type_count)
        session = training_session(path.read_bytes(), threads)

    def run(images: np.ndarray) -> tuple[np.ndarray, ...]:
        inputs = {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)}
        return tuple(np.asarray(output) for output in session.run(list(HybridOutput._fields), inputs))

    return run
