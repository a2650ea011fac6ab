"""The large-frame synthetic product: small defects on big frames, with masks that say where they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.layout import scan_dataset
from datasets.synth_large import generate_large_frame_product
from inspection.imaging import read_image
from inspection.tiling import defect_extents


def test_defects_are_small_visible_and_masked(tmp_path: Path) -> None:
    summary = generate_large_frame_product(tmp_path / "big", n=10, seed=3, size=512, max_defect_px=12)
    records = scan_dataset(summary.root)
    assert len(records) == 10 and sum(r.is_defect for r in records) == 4
    for record in records:
        image = read_image(record.path)
        assert image.shape == (512, 512)
        if record.is_defect:
            assert record.mask is not None
            extents = defect_extents([read_image(record.mask)])
            assert extents and max(extents) <= 12


def test_frames_depend_on_their_index_only(tmp_path: Path) -> None:
    a = generate_large_frame_product(tmp_path / "a", n=4, seed=1, size=256, max_defect_px=8)
    b = generate_large_frame_product(tmp_path / "b", n=6, seed=1, size=256, max_defect_px=8)
    for record in scan_dataset(a.root):
        np.testing.assert_array_equal(read_image(record.path), read_image(b.root / record.relpath))


def test_impossible_defect_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_defect_px"):
        generate_large_frame_product(tmp_path / "c", n=4, size=256, max_defect_px=64)
