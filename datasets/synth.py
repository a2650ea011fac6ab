"""Synthetic product images with drawn defects and exact pixel masks, for tests and demos."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFECT_TYPES: tuple[str, ...] = ("scratch", "spot", "crack", "stain")

# A pixel belongs to the mask when the defect moved it by at least this many gray levels; low enough to
# keep the soft body of a stain, high enough to drop anti-aliasing fringes nobody could see.
MASK_MIN_DELTA = 10

FloatImage = np.ndarray


@dataclass(frozen=True)
class SynthSummary:
    """Where a synthetic product was written and how many images of each label it holds."""

    root: Path
    counts: dict[str, int]  # label -> number of images written (labels: "good" + defect types)


def _unit_noise(rng: np.random.Generator, size: int, sigma: float) -> FloatImage:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    noise = cv2.GaussianBlur(rng.normal(0.0, 1.0, (size, size)).astype(np.float32), (0, 0), sigma)
    return noise / (float(noise.std()) + 1e-6)


def _texture(rng: np.random.Generator, size: int) -> FloatImage:
    """A defect-free part: one of three surface textures under a random lighting gradient."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # brushed metal: noise smeared along one direction
        length = max(5, size // 5) | 1
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, np.pi)
        c, dx, dy = length // 2, np.cos(angle) * length / 2, np.sin(angle) * length / 2
        cv2.line(kernel, (int(c - dx), int(c - dy)), (int(c + dx), int(c + dy)), 1.0, 1)
        noise = cv2.filter2D(rng.normal(0.0, 1.0, (size, size)).astype(np.float32), -1, kernel / kernel.sum())
        surface = noise / (float(noise.std()) + 1e-6)
    elif kind == 1:  # fabric: a rotated weave pattern
        angle, period = rng.uniform(0, np.pi), rng.uniform(1 / 24, 1 / 10)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        surface = 1.4 * np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
    else:  # cast / mottled surface
        surface = _unit_noise(rng, size, size * rng.uniform(0.015, 0.04))
    grain = rng.normal(0.0, rng.uniform(0.8, 2.0), (size, size))
    # Lighting varies per part so "good" is not one flat look a model could memorise.
    gx, gy = rng.normal(0.0, 1.0, 2)
    gradient = rng.uniform(0, 30) * ((gx * (xx - 0.5) + gy * (yy - 0.5)) / (np.hypot(gx, gy) + 1e-6))
    vignette = -rng.uniform(0, 20) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    base = rng.uniform(85, 170)
    return (base + rng.uniform(3, 8) * surface + grain + gradient + vignette).astype(np.float32)


def _scratch(rng: np.random.Generator, size: int) -> FloatImage:
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 3)):
        length, angle = size * rng.uniform(0.35, 0.75), rng.uniform(0, np.pi)
        centre = rng.uniform(0.3, 0.7, 2) * size
        direction, normal = (
            np.array([np.cos(angle), np.sin(angle)]),
            np.array([-np.sin(angle), np.cos(angle)]),
        )
        # A slight bend through the middle keeps it "roughly" straight, like a real tool mark.
        ts = np.linspace(-0.5, 0.5, 5)
        bend = rng.normal(0, 0.015 * length) * (1 - (2 * ts) ** 2)
        pts = centre + np.outer(ts * length, direction) + np.outer(bend, normal)
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, max(1, size // 128), cv2.LINE_AA)
    sign = rng.choice([-1.0, 1.0])
    return sign * rng.uniform(50, 80) * canvas.astype(np.float32) / 255


def _spot(rng: np.random.Generator, size: int) -> FloatImage:
    canvas = np.zeros((size, size), np.uint8)
    centre = rng.uniform(0.2, 0.8, 2) * size
    for _ in range(rng.integers(1, 4)):
        radius = max(2.0, size * rng.uniform(0.015, 0.045))
        offset = rng.normal(0, size * 0.06, 2)
        axes = (round(radius), round(radius * rng.uniform(0.75, 1.0)))
        cv2.ellipse(canvas, tuple(np.round(centre + offset).astype(int)), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    blob = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.8)
    return rng.choice([-1.0, 1.0]) * rng.uniform(55, 90) * blob


def _crack_path(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, size: int) -> np.ndarray:
    step = max(2.0, size * rng.uniform(0.025, 0.04))
    points, heading = [start], angle
    for _ in range(max(2, int(length / step))):
        heading += rng.normal(0, 0.45)  # jagged: each segment turns
        heading = 0.7 * heading + 0.3 * angle  # but the crack keeps its overall course
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.clip(np.array(points), 0, size - 1)


def _crack(rng: np.random.Generator, size: int) -> FloatImage:
    canvas = np.zeros((size, size), np.uint8)
    angle, length = rng.uniform(0, 2 * np.pi), size * rng.uniform(0.35, 0.6)
    start = rng.uniform(0.35, 0.65, 2) * size - length / 2 * np.array([np.cos(angle), np.sin(angle)])
    trunk = _crack_path(rng, start, angle, length, size)
    width = max(1, size // 96)
    cv2.polylines(canvas, [np.round(trunk).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    for _ in range(rng.integers(1, 4)):  # branches split off the trunk at an angle
        origin = trunk[rng.integers(1, len(trunk) - 1)]
        branch_angle = angle + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2)
        branch = _crack_path(rng, origin, branch_angle, length * rng.uniform(0.25, 0.5), size)
        cv2.polylines(canvas, [np.round(branch).astype(np.int32)], False, 255, 1, cv2.LINE_AA)
    return -rng.uniform(60, 95) * canvas.astype(np.float32) / 255  # cracks are shadows: always dark


def _stain(rng: np.random.Generator, size: int) -> FloatImage:
    canvas = np.zeros((size, size), np.uint8)
    radius = size * rng.uniform(0.1, 0.18)
    centre = rng.uniform(0.3, 0.7, 2) * size
    for _ in range(rng.integers(4, 8)):  # overlapping ellipses give an irregular outline
        c = np.round(centre + rng.uniform(-0.6, 0.6, 2) * radius).astype(int)
        axes = (round(radius * rng.uniform(0.4, 0.9)), round(radius * rng.uniform(0.3, 0.7)))
        cv2.ellipse(canvas, tuple(c), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    soft = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), radius * 0.25)
    mottle = 0.75 + 0.25 * np.tanh(_unit_noise(rng, size, radius * 0.3))
    sign = -1.0 if rng.random() < 0.7 else 1.0  # most stains (oil, rust) darken
    return sign * rng.uniform(32, 48) * soft * mottle


_DRAWERS: dict[str, Callable[[np.random.Generator, int], FloatImage]] = {
    "scratch": _scratch,
    "spot": _spot,
    "crack": _crack,
    "stain": _stain,
}


def _render(gray: FloatImage, tint: np.ndarray | None) -> np.ndarray:
    image = gray if tint is None else gray[..., None] * tint
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _make_image(rng: np.random.Generator, size: int, color: bool, label: str) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask (all zero for good parts)."""
    surface = _texture(rng, size)
    tint = rng.uniform(0.75, 1.15, 3) if color else None
    clean = _render(surface, tint)
    if label == "good":
        return clean, np.zeros((size, size), np.uint8)
    for _ in range(10):  # a defect clipped against a saturated background could vanish; redraw it then
        image = _render(surface + _DRAWERS[label](rng, size), tint)
        delta = np.abs(image.astype(np.int16) - clean.astype(np.int16))
        changed = delta.max(axis=2) if color else delta
        mask = np.where(changed >= MASK_MIN_DELTA, 255, 0).astype(np.uint8)
        if mask.any():
            return image, mask
    raise RuntimeError(f"could not draw a visible {label} defect")


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def generate_synthetic_product(
    root: Path,
    n: int = 200,
    *,
    seed: int = 0,
    color: bool = False,
    image_size: int = 128,
    defect_fraction: float = 0.4,
    defect_types: Sequence[str] = DEFECT_TYPES,
    on_progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write n synthetic part images (good + defects, with masks) in the dataset layout under root.

    Image i depends only on (seed, i, color, image_size, defect_fraction, defect_types), never on n.
    """
    root = Path(root)
    types = tuple(defect_types)
    if n < 2:
        raise ValueError(f"n must be at least 2 (one good and one defect image), got {n}")
    if not 0.0 < defect_fraction < 1.0:
        raise ValueError(f"defect_fraction must lie strictly between 0 and 1, got {defect_fraction}")
    unknown = sorted(set(types) - set(DEFECT_TYPES))
    if unknown or not types:
        raise ValueError(f"defect_types must be a non-empty subset of {DEFECT_TYPES}, got unknown {unknown}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    n_defects = round(n * defect_fraction)
    if not 0 < n_defects < n:
        raise ValueError(f"n={n} with defect_fraction={defect_fraction} gives {n_defects} defect images")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder")

    return write_product(
        root,
        n,
        seed=seed,
        defect_fraction=defect_fraction,
        defect_types=types,
        draw=lambda rng, label: _make_image(rng, image_size, color, label),
        stem="part",
        write=_write_png,
        on_progress=on_progress,
    )


def write_product(
    root: Path,
    n: int,
    *,
    seed: int,
    defect_fraction: float,
    defect_types: Sequence[str],
    draw: Callable[[np.random.Generator, str], tuple[np.ndarray, np.ndarray]],
    stem: str,
    write: Callable[[Path, np.ndarray], None],
    on_progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write n images drawn by `draw(rng, label)` (image, mask) in the dataset layout under root, which must be
    absent or empty: built in a hidden sibling and moved into place at the end, so a failure never leaves half a
    dataset. Image i's label and pixels depend only on (seed, i) and the arguments, never on n."""
    counts = {label: 0 for label in ("good", *defect_types)}
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for i in range(n):
            # Image i is a defect when the running count round(i * f) steps up: exactly round(n * f) in all,
            # evenly spread, and decided by i alone so a longer run only appends images.
            k = round(i * defect_fraction)
            label = defect_types[k % len(defect_types)] if round((i + 1) * defect_fraction) > k else "good"
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
            image, mask = draw(rng, label)
            name = f"{stem}_{i:05d}.png"
            write(staging / label / name, image)
            if label != "good":
                write(staging / "masks" / label / name, mask)
            counts[label] += 1
            if on_progress is not None:
                on_progress(1)
        if root.exists():
            root.rmdir()
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SynthSummary(root=root, counts=counts)
