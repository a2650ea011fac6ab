"""Synthetic large-frame product: megapixel textured parts whose defects are a few pixels across, with masks.

The case tiling exists for: resized whole to a 224 px input, a 2048 px frame shrinks ~9x and a 10 px defect
becomes about one pixel. The texture is built from cheap pieces (upsampled low-frequency noise, a weave, grain,
lighting) so a 2048 px frame renders in a fraction of a second on one core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from datasets.synth import MASK_MIN_DELTA, SynthSummary, write_product

LARGE_DEFECT_TYPES: tuple[str, ...] = ("spot", "scratch", "crack")
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A defect-free part: mottling, a faint weave, fine grain and a lighting gradient (float32 gray levels)."""
    coarse = rng.normal(0.0, 1.0, (max(4, size // 32), max(4, size // 32))).astype(np.float32)
    mottle = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    period = rng.uniform(6, 14)
    weave = np.sin(2 * np.pi * ramp[:, None] * size / period) * np.sin(2 * np.pi * ramp[None, :] * size / period)
    gx, gy = rng.normal(0.0, 1.0, 2)
    gradient = rng.uniform(0, 25) * (gx * ramp[None, :] + gy * ramp[:, None]) / (np.hypot(gx, gy) + 1e-6)
    grain = rng.normal(0.0, rng.uniform(2.0, 3.5), (size, size)).astype(np.float32)
    base = rng.uniform(95, 160)
    return (base + rng.uniform(4, 8) * mottle + rng.uniform(1, 3) * weave + gradient + grain).astype(np.float32)


def _draw_defect(rng: np.random.Generator, label: str, max_px: int) -> np.ndarray:
    """The defect's intensity change on a max_px x max_px patch (float32; it fits in the patch by construction)."""
    canvas = np.zeros((max_px * 4, max_px * 4), np.uint8)  # drawn 4x up, then area-averaged: soft edges
    c = max_px * 2
    if label == "spot":
        radius = rng.uniform(2.0, max(2.5, max_px / 2 - 1)) * 4
        axes = (round(radius), round(radius * rng.uniform(0.7, 1.0)))
        cv2.ellipse(canvas, (c, c), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    elif label == "scratch":
        half, angle = rng.uniform(min(4, max_px / 2 - 2), max_px / 2 - 1) * 4, rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * half
        cv2.line(canvas, (round(c - d[0]), round(c - d[1])), (round(c + d[0]), round(c + d[1])), 255, 5)
    else:  # crack: a short jagged polyline
        points, heading = [np.array([c, c], float)], rng.uniform(0, 2 * np.pi)
        for _ in range(4):
            heading += rng.normal(0, 0.6)
            step = rng.uniform(2, max(2.5, max_px / 2 - 2)) * 2
            points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
        pts = np.clip(np.array(points) - np.mean(points, axis=0) + c, 2, max_px * 4 - 3)
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, 5)
    small = cv2.resize(canvas, (max_px, max_px), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    sign = -1.0 if label == "crack" or rng.random() < 0.6 else 1.0
    return sign * rng.uniform(45, 75) * small


def make_large_frame(
    rng: np.random.Generator, size: int, label: str, max_defect_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """One uint8 frame and its uint8 mask (all zero for good parts)."""
    surface = _surface(rng, size)
    clean = np.clip(np.round(surface), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), np.uint8)
    if label == "good":
        return clean, mask
    for _ in range(10):  # a defect lost against a saturated patch is drawn again elsewhere
        y, x = rng.integers(max_defect_px, size - 2 * max_defect_px, 2)
        patch = surface.copy()
        patch[y : y + max_defect_px, x : x + max_defect_px] += _draw_defect(rng, label, max_defect_px)
        image = np.clip(np.round(patch), 0, 255).astype(np.uint8)
        changed = np.abs(image.astype(np.int16) - clean.astype(np.int16)) >= MASK_MIN_DELTA
        if changed.any():
            mask[changed] = 255
            return image, mask
    raise RuntimeError(f"could not draw a visible {label} defect")


def generate_large_frame_product(
    root: Path,
    n: int = 200,
    *,
    seed: int = 0,
    size: int = 2048,
    max_defect_px: int = 16,
    defect_fraction: float = 0.4,
    on_progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write n gray size x size frames (good + defects of at most max_defect_px across, with masks) under root.

    Frame i depends only on (seed, i, size, max_defect_px, defect_fraction), never on n.
    """
    root = Path(root)
    if n < 2:
        raise ValueError(f"n must be at least 2 (one good and one defect image), got {n}")
    if not 0.0 < defect_fraction < 1.0:
        raise ValueError(f"defect_fraction must lie strictly between 0 and 1, got {defect_fraction}")
    if not 8 <= max_defect_px <= size // 8:
        raise ValueError(f"max_defect_px must lie in [8, size / 8 = {size // 8}], got {max_defect_px}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder")
    return write_product(
        root,
        n,
        seed=seed,
        defect_fraction=defect_fraction,
        defect_types=LARGE_DEFECT_TYPES,
        draw=lambda rng, label: make_large_frame(rng, size, label, max_defect_px),
        stem="frame",
        write=_write,
        on_progress=on_progress,
    )


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, _PNG_FAST):
        raise OSError(f"could not write {path}")
