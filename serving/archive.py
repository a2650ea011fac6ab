"""Archiving frames for review and retraining: every defect and low-confidence pass, and a deterministic sample of
the other passes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np

from inspection.atomic import write_atomic_bytes
from serving.heatmaps import write_map

EXTENSIONS = {"image/png": ".png", "image/bmp": ".bmp", "image/x-ms-bmp": ".bmp", "image/tiff": ".tif"}


def should_archive(inspection_id: str, needs_review: bool, pass_fraction: float) -> bool:
    """Frames QA should review always; other passes when a hash of the id falls under the fraction (reproducible,
    no RNG state)."""
    if needs_review:
        return True
    draw = int.from_bytes(hashlib.sha256(inspection_id.encode()).digest()[:4], "little") / 2**32
    return draw < pass_fraction


def archive_frame(
    root: Path, product: str, inspection_id: str, received: datetime, data: bytes, content_type: str
) -> Path:
    """Write the original bytes atomically under <root>/<product>/<date>/<id>.<ext>; returns the path."""
    folder = root / product / received.strftime("%Y-%m-%d")
    target = folder / f"{inspection_id}{EXTENSIONS.get(content_type.split(';')[0].strip().lower(), '.jpg')}"
    return write_atomic_bytes(target, data)


def archive_with_map(
    root: Path,
    product: str,
    inspection_id: str,
    received: datetime,
    data: bytes,
    content_type: str,
    anomaly_map: np.ndarray | None,
) -> tuple[Path, Path | None]:
    """archive_frame, then (given one) the model's anomaly map beside it: (frame path, map path or None). One
    call, so the request pays one thread-pool hop for both."""
    path = archive_frame(root, product, inspection_id, received, data, content_type)
    return path, write_map(path, anomaly_map) if anomaly_map is not None else None


def archived_file(root: Path, archive_path: str | None) -> Path | None:
    """The archived file if it exists inside the archive root; rows never lead outside it."""
    if not archive_path:
        return None
    path, base = Path(archive_path).resolve(), root.resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def media_type_of(path: Path) -> str:
    """The image content type an archived file was received with, from the extension archive_frame chose."""
    return {".png": "image/png", ".bmp": "image/bmp", ".tif": "image/tiff"}.get(path.suffix, "image/jpeg")
