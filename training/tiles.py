"""Training and scoring on tiles for any kind: the kind learns tiles, the skeleton judges whole parts.

Tiles are cut at native resolution (inspection.tiling) and written as ordinary dataset images, so every kind trains
on them unchanged. A tile's label comes from the mask inside it when the product has masks; without masks every
tile of a defective image carries the image's label (multiple-instance learning's weak labels) and the image's
score is the maximum over its tiles either way. Good tiles come from good images only, and the tiles of one image
stay on its side of the split. Calibration, the operating curve and the report stay per image, on those maxima,
with the tile maps stitched over the frame.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.layout import ImageRecord
from datasets.splits import Split
from inspection.errors import ConfigError
from inspection.imaging import read_image
from inspection.names import GOOD_LABEL
from inspection.preprocessing import PreprocessSpec
from inspection.product_config import ProductConfig, TilingConfig
from inspection.progress import console, progress_task
from inspection.tiling import (
    MIN_TILE_DEFECT_PIXELS,
    Box,
    TileGeometry,
    auto_geometry,
    check_geometry,
    crop,
    defect_extents,
    stitch,
    tile_boxes,
)
from models.kinds import ModelKind
from training.kinds.base import ExportedOnnx, Fitted, Scores, TrainingJob
from training.predict import Predictions

GOOD_TILES_PER_IMAGE = 6  # sampled from each good training image: enough variety, a bounded trunk cache
# ...and no more than about this many good tiles in all: past it the per-image count drops (to at least 1), so the
# cost of training (each fine-tuning epoch costs per tile) stops growing with the good frames. The 200-frame
# synthetic bench split at 6 a frame: 474 good tiles beside 67 defective ones; at 3 a frame 237.
GOOD_TILES_BUDGET = 240
REPORT_MAP_SIZE = 512  # side of the stitched maps the report's pixel metrics are computed on
AUTO_MASK_SAMPLE = 64
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
MASK_LABELS = "masks: a tile is defective when its mask holds a defect"
IMAGE_LABELS = "image labels: every tile of a defective image (multiple-instance, image score = max over tiles)"


def good_tiles_per_image(good_images: int) -> int:
    """Good tiles sampled from each good image of a split: GOOD_TILES_PER_IMAGE, fewer (at least 1) where that
    would pass GOOD_TILES_BUDGET."""
    return max(1, min(GOOD_TILES_PER_IMAGE, GOOD_TILES_BUDGET // max(1, good_images)))


def _sample(records: Sequence[ImageRecord], size: int) -> list[ImageRecord]:
    return list(records[:: max(1, len(records) // size)][:size])


def resolve_geometry(config: ProductConfig, records: Sequence[ImageRecord], input_size: int) -> TileGeometry | None:
    """The product's ROI and tiles checked against its images (`auto` resolved from the masks), or None when
    neither is set (whole frames, as always)."""
    if config.roi is None and config.tiling is None:
        return None
    roi = None if config.roi is None else Box(config.roi.x, config.roi.y, config.roi.width, config.roi.height)
    sizes = [read_image(r.path).shape[:2] for r in _sample(records, AUTO_MASK_SAMPLE)]
    if config.tiling == "auto":
        masked = _sample([r for r in records if r.mask is not None], AUTO_MASK_SAMPLE)
        masks = [read_image(r.mask) for r in masked if r.mask is not None]
        geometry = auto_geometry(sizes, defect_extents(masks), input_size, roi)
    elif isinstance(config.tiling, TilingConfig):
        geometry = TileGeometry(config.tiling.tile, config.tiling.overlap, roi)
    else:
        geometry = TileGeometry(None, 0, roi)
    check_geometry(geometry, [(int(h), int(w)) for h, w in sizes])
    return geometry


def resolved_tiling(geometry: TileGeometry) -> dict[str, Any]:
    """The config's `tiling` as it was resolved (what the saved config says `auto` became)."""
    return {"tiling": None if geometry.tile is None else TilingConfig(tile=geometry.tile, overlap=geometry.overlap)}


@dataclasses.dataclass
class TileSet:
    """Tiles written as dataset images, and for each the index of the image it was cut from."""

    records: list[ImageRecord]
    owners: np.ndarray
    boxes: list[Box]


def _mask_of(record: ImageRecord, height: int, width: int) -> np.ndarray | None:
    if not record.is_defect:
        return np.zeros((height, width), np.uint8)
    if record.mask is None:
        return None
    mask = read_image(record.mask)
    return mask.max(axis=2) if mask.ndim == 3 else mask


def cut_tiles(
    records: Sequence[ImageRecord],
    geometry: TileGeometry,
    out_dir: Path,
    name: str,
    *,
    training: bool,
    seed: int = 0,
    good_per_image: int = GOOD_TILES_PER_IMAGE,
) -> TileSet:
    """Write the tiles of `records` under out_dir. For scoring (`training=False`) every tile, labeled by its image;
    for training, defective tiles by the mask (all of a defective image's tiles without one) and a sample of good
    images' tiles, leaving out the clean tiles of defective images (their mask may miss a faint edge)."""
    rng = np.random.default_rng(seed)
    tiles, owners, boxes = [], [], []
    with progress_task(f"cutting tiles ({name})", len(records)) as advance:
        for index, record in enumerate(records):
            image = read_image(record.path)
            height, width = image.shape[:2]
            frame_boxes = tile_boxes(geometry, height, width)
            mask = _mask_of(record, height, width)
            chosen: list[tuple[Box, str]] = []
            if not training:
                chosen = [(box, record.label) for box in frame_boxes]
            elif not record.is_defect:
                picks = rng.permutation(len(frame_boxes))[:good_per_image]
                chosen = [(frame_boxes[i], GOOD_LABEL) for i in sorted(picks)]
            elif mask is None:
                chosen = [(box, record.label) for box in frame_boxes]
            else:
                chosen = [
                    (box, record.label)
                    for box in frame_boxes
                    if int(np.count_nonzero(crop(mask, box))) >= MIN_TILE_DEFECT_PIXELS
                ]
            for box, label in chosen:
                stem = f"{Path(record.relpath).stem}_{record.label}_x{box.x}_y{box.y}"
                path = out_dir / label / f"{stem}.png"
                _write(path, crop(image, box))
                tile_mask = None
                if label != GOOD_LABEL and mask is not None:
                    tile_mask = out_dir / "masks" / label / f"{stem}.png"
                    _write(tile_mask, crop(mask, box))
                tiles.append(
                    ImageRecord(f"{label}/{stem}.png", label, path, tile_mask, group=record.group_key, meta={})
                )
                owners.append(index)
                boxes.append(box)
            advance(1)
    return TileSet(tiles, np.array(owners, dtype=np.int64), boxes)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image), _PNG_FAST):
        raise OSError(f"could not write {path}")


def max_over_tiles(values: np.ndarray, owners: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the maximum of its tiles' values and the index of the tile that holds it."""
    best = np.full(n_images, -np.inf)
    where = np.zeros(n_images, dtype=np.int64)
    for tile, (owner, value) in enumerate(zip(owners.tolist(), np.asarray(values, np.float64).tolist(), strict=True)):
        if value > best[owner]:
            best[owner], where[owner] = value, tile
    return best, where


def image_scores(tile_scores: Scores, tiles: TileSet, records: Sequence[ImageRecord]) -> Scores:
    """Tile scores -> per-image Scores: the maximum over each image's tiles (its types from that tile), and
    the tile maps (or, for a kind without maps, each tile's score) stitched over the frame at REPORT_MAP_SIZE."""
    n = len(records)
    defect, where = max_over_tiles(tile_scores.predictions.defect_probability, tiles.owners, n)
    types = tile_scores.predictions.type_probabilities[where]
    calibration = None
    if tile_scores.calibration is not None:
        calibration = max_over_tiles(tile_scores.calibration, tiles.owners, n)[0]
    components = {k: max_over_tiles(v, tiles.owners, n)[0] for k, v in tile_scores.components.items()}
    maps = np.zeros((n, REPORT_MAP_SIZE, REPORT_MAP_SIZE), np.float32)
    for i, record in enumerate(records):
        mine = np.flatnonzero(tiles.owners == i)
        if tile_scores.maps is not None:
            tile_maps = [tile_scores.maps[t] for t in mine]
        else:
            tile_maps = [np.full((2, 2), tile_scores.predictions.defect_probability[t], np.float32) for t in mine]
        height, width = read_image(record.path).shape[:2] if len(mine) else (1, 1)
        frame_map = stitch(tile_maps, [tiles.boxes[t] for t in mine], height, width)
        maps[i] = cv2.resize(frame_map, (REPORT_MAP_SIZE, REPORT_MAP_SIZE), interpolation=cv2.INTER_AREA)
    return Scores(Predictions(defect.astype(np.float32), types), maps, components, calibration)


class TiledKind:
    """Any registered kind, trained and scored on tiles; its bundles carry the geometry in their spec."""

    def __init__(self, inner: ModelKind, geometry: TileGeometry) -> None:
        self.inner, self.geometry = inner, geometry
        self.name, self.typed = inner.name, inner.typed
        self.supports_int8 = False  # INT8's accuracy on tiles has not been measured
        self.bundle_type = inner.bundle_type

    def _tile_dir(self, job: TrainingJob) -> Path:
        return job.settings.run_dir(job.product) / "tiles"

    def _tile_job(self, job: TrainingJob) -> tuple[TrainingJob, str]:
        root = self._tile_dir(job)
        shutil.rmtree(root, ignore_errors=True)
        has_masks = any(r.mask is not None for r in job.records if r.is_defect)
        parts: dict[Split, list[ImageRecord]] = {}
        for side, records in job.parts.items():
            training = side in ("train", "val")  # val's sampled tiles only steer the kind's early stopping
            if training:
                tiles = cut_tiles(
                    records,
                    self.geometry,
                    root / side,
                    side,
                    training=True,
                    seed=job.config.seed,
                    good_per_image=good_tiles_per_image(sum(not r.is_defect for r in records)),
                )
                parts[side] = tiles.records
            else:
                parts[side] = []
        tile_records = [r for side in parts.values() for r in side]
        labels = MASK_LABELS if has_masks else IMAGE_LABELS
        return dataclasses.replace(job, records=tile_records, parts=parts, spec=job.spec.untiled()), labels

    def describe(self, job: TrainingJob) -> str:
        inner = self.inner.describe(job)
        return f"{self.geometry.describe()}" + (f"; {inner}" if inner else "")

    def params(self, job: TrainingJob) -> dict[str, Any]:
        return {**self.inner.params(job), "tiling": self.geometry.to_dict()}

    def fit(self, job: TrainingJob) -> Fitted:
        tile_job, labels = self._tile_job(job)
        n_tiles = {side: len(records) for side, records in tile_job.parts.items()}
        console.print(f"tiles: {self.geometry.describe()}; training tiles {n_tiles}; labels from {labels}")
        if not any(r.is_defect for r in tile_job.parts["train"]) and self.inner.name != "anomaly":
            raise ConfigError("no training tile holds a defect: make the tiles larger or check the masks")
        fitted = self.inner.fit(tile_job)
        provisional = self.inner.bundle(tile_job, fitted, float(np.median(fitted.val_scores)), dict(fitted.info))
        provisional = dataclasses.replace(provisional, spec=job.spec)
        val = self.score(provisional, job.parts["val"], "validation")
        inner_cleanup = fitted.cleanup

        def cleanup() -> None:
            inner_cleanup()
            shutil.rmtree(self._tile_dir(job), ignore_errors=True)

        tiling = {"geometry": self.geometry.to_dict(), "tile_labels": labels, "training_tiles": n_tiles}
        return dataclasses.replace(
            fitted,
            val_scores=val.calibration_units,
            info={**fitted.info, "tiling": tiling},
            training={**fitted.training, "tiling": tiling},
            cleanup=cleanup,
        )

    def fit_share(self, job: TrainingJob) -> None:
        self.inner.fit_share(self._tile_job(job)[0])

    def extra_thresholds(self, val_labels: np.ndarray, val_scores: np.ndarray) -> dict[str, float]:
        return self.inner.extra_thresholds(val_labels, val_scores)

    def bundle(self, job: TrainingJob, fitted: Fitted, threshold: float, info: dict[str, Any]) -> Any:
        bundle = self.inner.bundle(dataclasses.replace(job, spec=job.spec.untiled()), fitted, threshold, info)
        return dataclasses.replace(bundle, spec=job.spec)

    def score(self, bundle: Any, records: Sequence[ImageRecord], name: str) -> Scores:
        spec: PreprocessSpec = bundle.spec
        geometry = spec.tiling or self.geometry
        root = Path(tempfile.mkdtemp(prefix="inspection-tiles-"))
        try:
            tiles = cut_tiles(records, geometry, root, name, training=False)
            tile_scores = self.inner.score(bundle, tiles.records, f"{name} tiles")
            return image_scores(tile_scores, tiles, records)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def served_scores(self, bundle: Any, scores: np.ndarray) -> np.ndarray:
        return self.inner.served_scores(bundle, scores)

    def report_extras(
        self, bundle: Any, records: Sequence[ImageRecord], scores: Scores, fitted: Fitted | None
    ) -> dict[str, Any]:
        extras = self.inner.report_extras(bundle, records, scores, fitted)
        tiling = bundle.info.get("tiling") or {"geometry": self.geometry.to_dict()}
        return {**extras, "tiling": {**tiling, "image_score": "maximum over tiles"}}

    def export(
        self, bundle: Any, staging: Path, metadata: dict[str, Any], images: Sequence[np.ndarray]
    ) -> ExportedOnnx:
        # Parity is checked on tiles, what the network sees: those of the first few test frames.
        tiles = [
            np.ascontiguousarray(crop(image, box))
            for image in images[:2]
            for box in tile_boxes(self.geometry, *image.shape[:2])
        ]
        return self.inner.export(bundle, staging, metadata, tiles)
