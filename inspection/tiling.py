"""Region of interest and tiles: which native pixels of a frame the model sees, and how tile maps become one map.

Shared by training (tiles cut from dataset images, labels from the mask inside each tile), export (the geometry
travels in the ONNX metadata with the preprocessing) and serving (every tile of a frame scored in one run, the
heatmap stitched over the frame). A tile is cut at native resolution and only then resized to the model input,
so a defect a few pixels wide keeps its size where a whole-frame resize would shrink it below one pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from inspection.errors import ConfigError, ImageDecodeError

# `tiling: auto` sizes tiles so the median defect spans at least this many pixels at the model input: below
# about 8 px the backbone's stride-8 features average a defect into its background.
AUTO_MIN_DEFECT_INPUT_PX = 8.0
AUTO_STEP = 32  # tile sides are multiples of the network's total stride
# A tile whose mask holds fewer defect pixels than this is a good tile of a defective image (a fringe of
# anti-aliasing at its border), left out of training rather than called either.
MIN_TILE_DEFECT_PIXELS = 4
# Stitched maps kept no larger than this on their longer side: what a browser shows, and what is archived.
STITCHED_MAP_MAX_SIDE = 1024


class Box(NamedTuple):
    """A rectangle in native frame pixels."""

    x: int
    y: int
    width: int
    height: int


class FrameGeometryError(ImageDecodeError):
    """A frame that cannot hold the model's region of interest or tiles (a 4xx, not a verdict)."""


@dataclass(frozen=True)
class TileGeometry:
    """Where the model looks: an optional ROI (native px) and square tiles over it (None: the ROI whole)."""

    tile: int | None = None
    overlap: int = 0
    roi: Box | None = None

    def __post_init__(self) -> None:
        if self.roi is not None and not isinstance(self.roi, Box):
            object.__setattr__(self, "roi", Box(*self.roi))
        if self.tile is not None and not 0 <= self.overlap < self.tile:
            raise ConfigError(f"tiling: overlap {self.overlap} must be in [0, tile {self.tile})")

    def to_dict(self) -> dict[str, Any]:
        return {"tile": self.tile, "overlap": self.overlap, "roi": None if self.roi is None else list(self.roi)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileGeometry:
        roi = data.get("roi")
        return cls(data.get("tile"), int(data.get("overlap", 0)), None if roi is None else Box(*roi))

    def describe(self) -> str:
        roi = self.roi
        where = "whole frame" if roi is None else f"ROI {roi.width}x{roi.height} at ({roi.x}, {roi.y})"
        return f"{where}, " + ("no tiles" if self.tile is None else f"tiles {self.tile} px, overlap {self.overlap} px")


def region(geometry: TileGeometry, height: int, width: int) -> Box:
    """The scored region of a height x width frame: its ROI, or the whole frame; refuses a ROI outside it."""
    roi = geometry.roi
    if roi is None:
        return Box(0, 0, width, height)
    if roi.x < 0 or roi.y < 0 or roi.x + roi.width > width or roi.y + roi.height > height:
        raise FrameGeometryError(
            f"the {width}x{height} frame does not contain the product's region of interest "
            f"(x={roi.x}, y={roi.y}, {roi.width}x{roi.height})"
        )
    return roi


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one side: stride tile - overlap, the last tile flush with the end (so no pixel is missed
    and none is padded)."""
    count = 1 if tile >= length else math.ceil((length - tile) / (tile - overlap)) + 1
    if count == 1:
        return [0]
    last = length - tile
    return sorted({round(i * last / (count - 1)) for i in range(count)})


def tile_boxes(geometry: TileGeometry, height: int, width: int) -> list[Box]:
    """The boxes a height x width frame is scored in, row by row; refuses frames smaller than a tile."""
    area = region(geometry, height, width)
    if geometry.tile is None:
        return [area]
    tile = geometry.tile
    if tile > area.width or tile > area.height:
        raise FrameGeometryError(f"the scored region {area.width}x{area.height} is smaller than a {tile} px tile")
    return [
        Box(area.x + x, area.y + y, tile, tile)
        for y in _starts(area.height, tile, geometry.overlap)
        for x in _starts(area.width, tile, geometry.overlap)
    ]


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels of a HxW or HxWxC image (a view, no copy)."""
    return image[box.y : box.y + box.height, box.x : box.x + box.width]


def stitched_size(height: int, width: int, max_side: int = STITCHED_MAP_MAX_SIDE) -> tuple[int, int]:
    """(height, width) of a frame's stitched map: the frame's aspect, no larger than max_side."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def stitch(
    maps: Sequence[np.ndarray], boxes: Sequence[Box], height: int, width: int, max_side: int = STITCHED_MAP_MAX_SIDE
) -> np.ndarray:
    """Tile maps (each at the model input size) -> one float32 map over the whole frame, at stitched_size.

    Where tiles overlap the maximum wins: a defect seen at the edge of one tile and in full in the next keeps the
    full one's strength (an average would halve it). Pixels outside every box (outside the ROI) stay 0.
    """
    out_h, out_w = stitched_size(height, width, max_side)
    sy, sx = out_h / height, out_w / width
    stitched = np.zeros((out_h, out_w), np.float32)
    for tile_map, box in zip(maps, boxes, strict=True):
        y0, x0 = round(box.y * sy), round(box.x * sx)
        y1, x1 = max(y0 + 1, round((box.y + box.height) * sy)), max(x0 + 1, round((box.x + box.width) * sx))
        resized = cv2.resize(np.asarray(tile_map, np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        np.maximum(stitched[y0:y1, x0:x1], resized, out=stitched[y0:y1, x0:x1])
    return stitched


def check_geometry(geometry: TileGeometry, image_sizes: Sequence[tuple[int, int]]) -> None:
    """Refuse, with a message naming the problem, a ROI or tile that does not fit the product's (height, width)s."""
    for height, width in sorted(set(image_sizes)):
        try:
            tile_boxes(geometry, height, width)
        except FrameGeometryError as exc:
            raise ConfigError(f"roi/tiling do not fit the product's {width}x{height} images: {exc}") from exc


def defect_extents(masks: Sequence[np.ndarray]) -> list[float]:
    """The larger bounding-box side of each connected defect region (native px) of uint8 masks."""
    extents: list[float] = []
    for mask in masks:
        count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
        extents.extend(float(max(s[cv2.CC_STAT_WIDTH], s[cv2.CC_STAT_HEIGHT])) for s in stats[1:count])
    return extents


def auto_geometry(
    image_sizes: Sequence[tuple[int, int]],
    defect_sizes: Sequence[float],
    input_size: int,
    roi: Box | None = None,
) -> TileGeometry:
    """`tiling: auto`: the largest tile (a multiple of AUTO_STEP, at least the model input) at which the median
    defect still spans AUTO_MIN_DEFECT_INPUT_PX at the input, no larger than the smallest region; the overlap
    holds the 90th-percentile defect whole in at least one tile. Without masks: tiles at native resolution."""
    side = min(min(h, w) for h, w in image_sizes) if roi is None else min(roi.width, roi.height)
    if defect_sizes:
        median = float(np.median(defect_sizes))
        wanted = median * input_size / AUTO_MIN_DEFECT_INPUT_PX
        extent = float(np.percentile(defect_sizes, 90))
    else:
        wanted, extent = float(input_size), input_size / 8
    tile = int(max(input_size, wanted) // AUTO_STEP * AUTO_STEP)
    tile = max(AUTO_STEP, min(tile, side))
    overlap = int(min(math.ceil(extent / 16) * 16, tile // 2))
    return TileGeometry(tile=tile, overlap=overlap, roi=roi)
