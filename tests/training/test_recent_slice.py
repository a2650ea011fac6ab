"""The recent slice in training reports: its own block, and no class for a type seen only there."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.layout import ImageRecord
from training.evaluate import RECENT_SLICE_NOTE, recent_slice_block
from training.kinds.classifier import learnable_defect_types
from training.predict import Predictions


def _record(label: str, name: str) -> ImageRecord:
    return ImageRecord(relpath=f"{label}/{name}", label=label, path=Path(f"/nowhere/{label}/{name}"))


def test_a_type_seen_only_in_the_recent_slice_is_not_a_class() -> None:
    parts = {
        "train": [_record("good", "a.png"), _record("scratch", "b.png")],
        "val": [_record("spot", "c.png")],
        "test": [_record("good", "d.png")],
        "recent": [_record("stain", "e.png"), _record("scratch", "f.png")],
    }
    assert learnable_defect_types(parts) == ["scratch", "spot"]  # type: ignore[arg-type]


def test_recent_block_reports_the_slice_with_unknown_types() -> None:
    records = [_record("good", "a.png"), _record("stain", "b.png"), _record("scratch", "c.png")]
    predictions = Predictions(np.array([0.1, 0.2, 0.9]), np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]]))
    block = recent_slice_block(records, predictions, ["scratch", "spot"], threshold=0.5)
    assert block is not None and block.data == RECENT_SLICE_NOTE
    assert (block.n_good, block.n_defect, block.n_missed) == (1, 2, 1)
    assert block.per_defect_type["stain"].miss_rate == 1.0  # the new type, never trained on, is missed
    assert block.per_defect_type["scratch"].miss_rate == 0.0
    assert recent_slice_block([], None, ["scratch"], threshold=0.5) is None
