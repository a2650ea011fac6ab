"""Exporting the hybrid to ONNX: one graph runs the classifier and PatchCore and fuses them (models.hybrid).

The served outputs keep the classifier's contract (defect_probability, type_probabilities, anomaly_map), so the
server and the classifier's parity gate (models.onnx_parity) take it unchanged; the two fused inputs follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import HybridBundle
from models.hybrid import HYBRID_KIND, HybridOutput
from models.onnx_trace import export_traced

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
