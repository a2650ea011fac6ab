"""Archiving frames for review and retraining: every defect, and a deterministic sample of passes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from inspection.atomic import write_atomic_bytes

EXTENSIONS = {"image/png": ".png", "image/bmp": ".bmp", "image/x-ms-bmp": ".bmp", "image/tiff": ".tif"}


def should_archive(inspection_id: str, is_defect: bool, pass_fraction: float) -> bool:
    """Defects always; passes when a hash of the id falls under the fraction (reproducible, no RNG state)."""
    if is_defect:
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
