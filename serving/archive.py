"""Archiving frames for review and retraining: every defect and low-confidence pass, and a deterministic sample of
the other passes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np

from inspection.archive_paths import archive_target
from inspection.atomic import write_atomic_bytes
from serving.heatmaps import write_map


def should_archive(inspection_id: str, needs_review: bool, pass_fraction: float) -> bool:
    """Frames QA should review always; other passes when a hash of the id falls under the fraction (reproducible,
    no RNG state)."""
    if needs_review:
        return True
    draw = int.from_bytes(hashlib.sha256(inspection_id.encode()).digest()[:4], "little") / 2**32
    return draw < pass_fraction


def archive_with_map(
    root: Path,
    product: str,
    inspection_id: str,
    received: datetime,
    data: bytes,
    content_type: str,
    anomaly_map: np.ndarray | None,
) -> tuple[Path, Path | None]:
    """Write the original bytes atomically where inspection.archive_paths puts them, then (given one) the model's
    anomaly map beside them: (frame path, map path or None). One call, so the request pays one thread-pool hop
    for both."""
    path = write_atomic_bytes(archive_target(root, product, inspection_id, received, content_type), data)
    return path, write_map(path, anomaly_map) if anomaly_map is not None else None
