"""Loading dataset images through the shared preprocessing, and resolving a product's color mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datasets.layout import ImageRecord
from inspection.imaging import is_grayscale, read_image
from inspection.preprocessing import ColorMode, PreprocessSpec, prepare_image

COLOR_SAMPLE_SIZE = 64


def load_prepared(record: ImageRecord, spec: PreprocessSpec) -> np.ndarray:
    """Decode one dataset image and bring it to the model's input size (uint8 HxWx3)."""
    return prepare_image(read_image(record.path), spec)


def resolve_color_mode(records: Sequence[ImageRecord], requested: str) -> ColorMode:
    """'auto' becomes 'gray' when every sampled image is grayscale (so color noise is not learned), else 'color'."""
    if requested in ("gray", "color"):
        return requested  # type: ignore[return-value]
    step = max(1, len(records) // COLOR_SAMPLE_SIZE)
    sample = records[::step][:COLOR_SAMPLE_SIZE]
    return "gray" if all(is_grayscale(read_image(r.path)) for r in sample) else "color"


def defect_type_index(records: Sequence[ImageRecord], defect_types: Sequence[str]) -> np.ndarray:
    """Per record: index of its defect type, or -1 for good parts."""
    position = {name: i for i, name in enumerate(defect_types)}
    return np.array([position.get(r.label, -1) for r in records], dtype=np.int64)
