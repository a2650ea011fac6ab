"""Heatmaps: a model's anomaly map drawn over the archived frame.

At inspection time only the small map is stored beside the frame (`<id>.map.jpg`, uint8 at the model input
size, ~0.1 ms): drawing and encoding a 640x480 overlay costs 20-35 ms, which would sit in every defect
verdict's latency on the line, while most heatmaps are never looked at. The overlay is drawn when QA first
asks for it and kept as `<id>.heatmap.png`. The map is at the model input size; preprocessing resizes the
whole frame to that square (no crop), so the map stretched back to the frame's size lies on the same pixels.
Torch-free, as all of serving.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.archive_paths import beside
from inspection.errors import InspectionError
from inspection.frame_archive import FrameArchive
from inspection.imaging import DEFAULT_MAX_PIXELS, decode_image

# A JPEG of the map, not a PNG: on ELPV maps (224x224) quality 95 is 0.09 ms and 4.4 KB, at most one grey level
# off (the uint8 rounding's own size), where PNG (fast zlib, no filter) took 0.48 ms and 14 KB; most flagged
# frames' maps are stored and never drawn. Rows from before keep their `.map.png`; the reader takes either.
MAP_SUFFIX = ".map.jpg"
_MAP_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 95]
HEATMAP_SUFFIX = ".heatmap.png"
OPACITY = 0.45  # of the colour map over the frame: the part stays recognisable under it
# Fast zlib and no PNG row filter: encoding dominates the cost. A 640x480 overlay took ~15-18 ms so, against
# ~30 ms with libpng's adaptive filtering at level 1, for files of about the same size.
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def render_heatmap(frame: np.ndarray, anomaly_map: np.ndarray) -> np.ndarray:
    """Decoded uint8 gray (HxW) or RGB (HxWx3) frame and a uint8 (or [0, 1] float) map -> BGR HxWx3 overlay."""
    if anomaly_map.ndim != 2:
        raise ValueError(f"expected a 2-D anomaly map, got shape {anomaly_map.shape}")
    if anomaly_map.dtype != np.uint8:
        anomaly_map = np.rint(np.clip(anomaly_map, 0.0, 1.0) * 255.0).astype(np.uint8)
    height, width = frame.shape[:2]
    stretched = cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(stretched, cv2.COLORMAP_JET)
    base = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(colored, OPACITY, base, 1.0 - OPACITY, 0.0)


def encode_map(anomaly_map: np.ndarray) -> bytes:
    """A uint8 (S, S) anomaly map as stored beside its frame (MAP_SUFFIX)."""
    ok, encoded = cv2.imencode(".jpg", anomaly_map, _MAP_JPEG)
    if not ok:
        raise ValueError("JPEG encoding of the anomaly map failed")
    return encoded.tobytes()


def encode_png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image, _PNG_FAST)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def rendered_heatmap(
    archive: FrameArchive, frame_location: str, map_location: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> bytes | None:
    """The overlay (PNG) of the stored map on the archived frame, drawn on first request and kept beside them.

    None when the frame or map is missing, or the frame cannot be decoded at full size (a verdict was already
    given on it; the heatmap is extra).
    """
    target = beside(frame_location, HEATMAP_SUFFIX)
    if (drawn := archive.read(target)) is not None:
        return drawn
    map_bytes, frame_bytes = archive.read(map_location), archive.read(frame_location)
    if map_bytes is None or frame_bytes is None:
        return None
    # JPEG (MAP_SUFFIX) or, for rows stored before, PNG: imdecode tells them apart by their content.
    anomaly_map = cv2.imdecode(np.frombuffer(map_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    try:
        frame = decode_image(frame_bytes, max_pixels=max_pixels)
    except InspectionError:
        return None
    if anomaly_map is None:
        return None
    overlay = encode_png(render_heatmap(frame, anomaly_map))
    # Two QA users opening the same card at once both draw it; each write is whole, the second replaces the first.
    archive.write(target, overlay)
    return overlay
