"""Tile geometry: coverage, overlaps, ROI checks, stitching by maximum, `auto`, and the config's refusals."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from inspection.errors import ConfigError
from inspection.preprocessing import PreprocessSpec, preprocess, preprocess_tiles
from inspection.product_config import load_product_config
from inspection.tiling import (
    Box,
    FrameGeometryError,
    TileGeometry,
    auto_geometry,
    check_geometry,
    defect_extents,
    stitch,
    stitched_size,
    tile_boxes,
)


def test_tiles_cover_every_pixel_with_the_overlap_and_end_flush() -> None:
    boxes = tile_boxes(TileGeometry(tile=128, overlap=16), 300, 500)
    covered = np.zeros((300, 500), bool)
    for box in boxes:
        assert (box.width, box.height) == (128, 128)
        covered[box.y : box.y + 128, box.x : box.x + 128] = True
    assert covered.all()
    xs = sorted({b.x for b in boxes})
    assert xs[0] == 0 and xs[-1] == 500 - 128
    assert all(b - a <= 128 - 16 for a, b in itertools.pairwise(xs))


def test_roi_limits_the_tiles_and_a_frame_without_it_is_refused() -> None:
    geometry = TileGeometry(tile=64, overlap=0, roi=Box(100, 50, 128, 192))
    boxes = tile_boxes(geometry, 400, 400)
    assert len(boxes) == 2 * 3
    assert min(b.x for b in boxes) == 100 and max(b.x + b.width for b in boxes) == 228
    with pytest.raises(FrameGeometryError, match="region of interest"):
        tile_boxes(geometry, 200, 200)


def test_roi_alone_is_one_input_and_a_tile_larger_than_the_region_is_refused() -> None:
    assert tile_boxes(TileGeometry(roi=Box(10, 20, 50, 60)), 100, 100) == [Box(10, 20, 50, 60)]
    with pytest.raises(ConfigError, match="smaller than a 256 px tile"):
        check_geometry(TileGeometry(tile=256), [(200, 400)])


def test_stitching_keeps_the_maximum_in_overlaps_and_zero_outside_the_roi() -> None:
    boxes = [Box(0, 0, 64, 64), Box(32, 0, 64, 64)]
    maps = [np.full((8, 8), 0.9, np.float32), np.full((8, 8), 0.1, np.float32)]
    out = stitch(maps, boxes, 100, 100)
    assert out.shape == (100, 100)
    assert out[10, 40] == pytest.approx(0.9)  # the overlap: the stronger tile wins, not the 0.5 average
    assert out[10, 80] == pytest.approx(0.1)
    assert out[80, 10] == 0.0
    assert stitched_size(2048, 2448) == (857, 1024)


def test_preprocess_tiles_gives_each_tile_what_preprocess_gives_its_crop() -> None:
    image = np.random.default_rng(0).integers(0, 255, (200, 260), dtype=np.uint8)
    spec = PreprocessSpec(image_size=64, color_mode="gray", tiling=TileGeometry(tile=100, overlap=20))
    tiled = preprocess_tiles(image, spec)
    assert tiled.inputs.shape == (len(tiled.boxes), 3, 64, 64) and (tiled.height, tiled.width) == (200, 260)
    for index, box in enumerate(tiled.boxes):
        crop = np.ascontiguousarray(image[box.y : box.y + box.height, box.x : box.x + box.width])
        np.testing.assert_array_equal(tiled.inputs[index], preprocess(crop, spec))


@pytest.mark.parametrize(("channels", "mode"), [(3, "color"), (3, "gray"), (None, "color")])
def test_tiles_scaled_together_are_the_numbers_each_crop_gets_alone(channels: int | None, mode: str) -> None:
    shape = (160, 170) if channels is None else (160, 170, channels)
    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    geometry = TileGeometry(tile=64, overlap=8, roi=Box(3, 5, 140, 150))
    spec = PreprocessSpec(image_size=48, color_mode=mode, tiling=geometry)  # type: ignore[arg-type]
    tiled = preprocess_tiles(image, spec)
    expected = np.stack(
        [preprocess(np.ascontiguousarray(image[b.y : b.y + b.height, b.x : b.x + b.width]), spec) for b in tiled.boxes]
    )
    assert tiled.inputs.dtype == np.float32 and tiled.inputs.flags.c_contiguous
    np.testing.assert_array_equal(tiled.inputs, expected)


def test_the_spec_carries_the_geometry_and_an_untiled_spec_keeps_its_old_metadata() -> None:
    spec = PreprocessSpec(tiling=TileGeometry(tile=256, overlap=32, roi=Box(1, 2, 300, 400)))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert "tiling" not in PreprocessSpec().to_dict()
    assert PreprocessSpec.from_dict(PreprocessSpec().to_dict()).tiling is None


def test_auto_keeps_the_median_defect_visible_and_the_large_ones_whole() -> None:
    geometry = auto_geometry([(2048, 2048)], [10.0, 12.0, 14.0, 30.0], input_size=224)
    assert geometry.tile is not None and geometry.tile % 32 == 0
    assert 13.0 * 224 / geometry.tile >= 8.0
    assert geometry.overlap >= 16
    assert auto_geometry([(300, 300)], [], input_size=224).tile == 224


def test_defect_extents_measures_each_region() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[5:8, 5:15] = 255
    mask[30:42, 30:33] = 255
    assert sorted(defect_extents([mask])) == [10.0, 12.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tiling: {tile: 128, overlap: 128}\n", "must be smaller than tiling.tile"),
        ("roi: {x: 0, y: 0, width: 100, height: 400}\ntiling: {tile: 128}\n", "larger than the ROI"),
        ("tiling: big\n", "tiling"),
        ("tiling: {tile: 128, stride: 64}\n", "stride"),
    ],
)
def test_impossible_tiling_is_refused_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_product_config(tmp_path, "p")


def test_tiling_and_roi_load_and_default_to_unset(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "p.yaml").write_text("roi: {x: 4, y: 8, width: 512, height: 256}\ntiling: auto\n")
    config = load_product_config(tmp_path, "p")
    assert config.tiling == "auto" and config.roi is not None and config.roi.width == 512
    assert load_product_config(tmp_path, "other").tiling is None
