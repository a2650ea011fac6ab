"""Archiving frames for review and retraining: every defect and low-confidence pass, and a deterministic sample of
the other passes."""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np

from inspection.archive_paths import archive_key, beside
from inspection.frame_archive import FrameArchive
from serving.heatmaps import MAP_SUFFIX, encode_map


def should_archive(inspection_id: str, needs_review: bool, pass_fraction: float) -> bool:
    """Frames QA should review always; other passes when a hash of the id falls under the fraction (reproducible,
    no RNG state)."""
    if needs_review:
        return True
    draw = int.from_bytes(hashlib.sha256(inspection_id.encode()).digest()[:4], "little") / 2**32
    return draw < pass_fraction


def archive_with_map(
    archive: FrameArchive,
    product: str,
    inspection_id: str,
    received: datetime,
    data: bytes,
    content_type: str,
    anomaly_map: np.ndarray | None,
) -> tuple[str, str | None]:
    """Store the original bytes where inspection.archive_paths puts them, then (given one) the model's anomaly map
    beside them: (frame location, map location or None). One call, so the request pays one thread-pool hop for
    both."""
    location = archive.write(archive.location(archive_key(product, inspection_id, received, content_type)), data)
    if anomaly_map is None:
        return location, None
    return location, archive.write(beside(location, MAP_SUFFIX), encode_map(anomaly_map))
