"""Loading dataset images through the shared preprocessing, and resolving a product's color mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datasets.layout import ImageRecord
from inspection.errors import DatasetError
from inspection.imaging import is_grayscale, read_image
from inspection.preprocessing import ColorMode, PreprocessSpec, prepare_image
from inspection.product_config import ProductConfig

COLOR_SAMPLE_SIZE = 64
SIZE_SAMPLE_SIZE = 64
# Above this the CPU cost grows faster than what the measurements gained
# (docs/decisions/0012-image-size-224-auto-capped.md).
AUTO_SIZE_CAP = 320
AUTO_SIZE_STEP = 32  # the network's total stride: the last feature map gets whole cells


def load_prepared(record: ImageRecord, spec: PreprocessSpec) -> np.ndarray:
    """Decode one dataset image and bring it to the model's input size (uint8 HxWx3)."""
    return prepare_image(read_image(record.path), spec)


def resolve_color_mode(records: Sequence[ImageRecord], requested: str) -> ColorMode:
    """'auto' becomes 'gray' when every sampled image is grayscale (so color noise is not learned), else 'color'."""
    if requested in ("gray", "color"):
        return requested  # type: ignore[return-value]
    return "gray" if all(is_grayscale(read_image(r.path)) for r in _sample(records, COLOR_SAMPLE_SIZE)) else "color"


def _sample(records: Sequence[ImageRecord], size: int) -> Sequence[ImageRecord]:
    return records[:: max(1, len(records) // size)][:size]


def auto_image_size(native_sizes: Sequence[int]) -> int:
    """The median native size, capped at AUTO_SIZE_CAP and rounded to the nearest multiple of AUTO_SIZE_STEP."""
    median = float(np.median(native_sizes))
    return int(max(AUTO_SIZE_STEP, round(min(median, AUTO_SIZE_CAP) / AUTO_SIZE_STEP) * AUTO_SIZE_STEP))


def resolve_image_size(records: Sequence[ImageRecord], requested: int | str) -> int:
    """'auto' becomes auto_image_size of the sampled images' longer sides (a 300 px cell: 288); a number stays."""
    if isinstance(requested, int):
        return requested
    return auto_image_size([max(read_image(r.path).shape[:2]) for r in _sample(records, SIZE_SAMPLE_SIZE)])


def defect_type_index(records: Sequence[ImageRecord], defect_types: Sequence[str]) -> np.ndarray:
    """Per record: index of its defect type, or -1 for good parts."""
    position = {name: i for i, name in enumerate(defect_types)}
    return np.array([position.get(r.label, -1) for r in records], dtype=np.int64)


def defect_targets(records: Sequence[ImageRecord], soft_label_key: str | None = None) -> np.ndarray:
    """Per record: the defect head's training target. 1/0 from the folder label, or with `soft_label_key` the
    record's metadata value under that key (a defect probability in [0, 1]; records without it keep 1/0).

    A probability that contradicts its folder (a "good" image most annotators called defective) is refused: the
    folder label is what validation and the report judge by, so training on the opposite would be a silent
    relabelling."""
    targets = np.array([1.0 if r.is_defect else 0.0 for r in records], dtype=np.float32)
    if soft_label_key is None:
        return targets
    for i, record in enumerate(records):
        if soft_label_key not in record.meta:
            continue
        value = record.meta[soft_label_key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise DatasetError(
                f"{record.relpath}: metadata {soft_label_key!r} is {value!r}; a soft label must be a number in [0, 1]"
            )
        if (float(value) >= 0.5) != record.is_defect and float(value) != 0.5:
            raise DatasetError(
                f"{record.relpath}: metadata {soft_label_key!r} = {value} contradicts its folder label {record.label!r}"
            )
        targets[i] = float(value)
    return targets


def tta_flips_of(config: ProductConfig) -> tuple[str, ...]:
    """The flips the classifier averages over at test time: with `test_time_flips`, those `augment` allows
    (both: horizontal, vertical and both at once, the 180-degree turn); a part that is not symmetric gets none."""
    if not config.test_time_flips:
        return ()
    return (
        (("h",) if config.augment.hflip else ())
        + (("v",) if config.augment.vflip else ())
        + (("hv",) if config.augment.hflip and config.augment.vflip else ())
    )
