"""Whether a version's served ONNX file can serve: it loads in ONNX Runtime and scores a frame.

Promotion calls it before recording anything, so a file cut short or written for another runtime is refused with
the reason instead of becoming a champion that no replica can load after its next restart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspection.errors import InspectionError
from models.registry import ModelVersionInfo
from models.serving_choice import serving_file


class UnloadableModelError(InspectionError):
    """The served file of a version does not load in ONNX Runtime or cannot score a frame."""


def check_scores_a_frame(path: Path) -> None:
    """Load `path` in ONNX Runtime and score one mid-gray frame through its own preprocessing; raise
    UnloadableModelError saying why when either fails or the score is not a probability."""
    from models.onnx_runtime import OnnxScorer  # onnxruntime only where a file is checked

    try:
        scorer = OnnxScorer(path, threads=1, spinning=False)
        size = scorer.spec.image_size
        defect, _types = scorer.score_images([np.full((size, size), 128, np.uint8)])
    except Exception as error:  # ORT raises its own types (InvalidProtobuf, Fail, ...): all mean "cannot serve"
        raise UnloadableModelError(f"{path.name} cannot serve: {type(error).__name__}: {error}") from error
    if defect.shape != (1,) or not 0.0 <= float(defect[0]) <= 1.0:
        raise UnloadableModelError(f"{path.name} scored a frame {defect!r}, not one probability in [0, 1]")


def check_version_serves(info: ModelVersionInfo) -> None:
    """For an exported version, check_scores_a_frame on the file a replica would serve; nothing to check (and no
    error) for a version not exported yet, which no replica serves."""
    path = serving_file(info.artifacts)
    if path is not None:
        try:
            check_scores_a_frame(path)
        except UnloadableModelError as error:
            raise UnloadableModelError(
                f"refusing to promote {info.product} v{info.version}: {error}; re-export it "
                f"(`inspection export {info.product} --version {info.version}`) and promote again"
            ) from error
