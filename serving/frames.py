"""Camera frames in: content-type check, bomb guard, and reduced-size decoding for frames much larger than the
model input (JPEG decoders can scale by 1/2, 1/4, 1/8 inside the DCT, which is several times faster than
decoding full size and resizing, and averages pixels much like the INTER_AREA resize training used).
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.errors import ImageDecodeError, ImageTooLargeError
from inspection.imaging import decode_image, image_size_from_header
from inspection.preprocessing import PreprocessSpec, TiledFrame, preprocess, preprocess_tiles

ACCEPTED_CONTENT_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/bmp", "image/x-ms-bmp", "image/tiff"}
)
# 1280x1024. A 640x480 JPEG decodes (reduced) and preprocesses in ~0.7 ms of CPU, mostly in OpenCV with the GIL
# released; the thread-pool trip it replaces cost about as much in thread switches and event-loop turns.
INLINE_DECODE_MAX_PIXELS = 1_310_720
_REDUCED = {
    ("gray", 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    ("gray", 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    ("gray", 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    ("color", 2): cv2.IMREAD_REDUCED_COLOR_2,
    ("color", 4): cv2.IMREAD_REDUCED_COLOR_4,
    ("color", 8): cv2.IMREAD_REDUCED_COLOR_8,
}


class UnsupportedMediaType(ImageDecodeError):  # noqa: N818 (reads as the outcome at call sites)
    """The request declared a content type that is not an image format we decode."""


def check_content_type(content_type: str | None) -> None:
    """Refuse anything but the image types we decode (parameters such as '; charset' are ignored)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base not in ACCEPTED_CONTENT_TYPES:
        accepted = ", ".join(sorted(ACCEPTED_CONTENT_TYPES))
        raise UnsupportedMediaType(f"content type {base or '(none)'!r} is not supported; send one of {accepted}")


def reduction_factor(width: int, height: int, target: int) -> int:
    """Largest of 8, 4, 2 that keeps both sides at least the model input, else 1 (full decode).

    The final resize to the input size then still only shrinks (area averaging), as in training.
    """
    for factor in (8, 4, 2):
        if min(width, height) // factor >= target:
            return factor
    return 1


def frame_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the frame's header, without decoding pixels; refuses empty frames and frames over
    `max_pixels` (a decompression bomb is refused before it is decoded)."""
    if not data:
        raise ImageDecodeError("empty image")
    width, height = image_size_from_header(data)
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels")
    return width, height


def decode_frame(data: bytes, spec: PreprocessSpec, max_pixels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a frame into uint8 gray or RGB, reduced in the decoder when it is much larger than the input.
    `size` is frame_size()'s answer when the caller has it already."""
    width, height = size or frame_size(data, max_pixels)
    # A tiled model looks at native pixels: reducing in the decoder would shrink the small defects tiles are for.
    factor = 1 if spec.tiling is not None else reduction_factor(width, height, spec.image_size)
    if factor == 1:
        return decode_image(data, max_pixels=max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[(spec.color_mode, factor)])
    if image is None or image.size == 0:
        raise ImageDecodeError("image data is corrupt or truncated")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def frame_to_inputs(
    data: bytes, spec: PreprocessSpec, max_pixels: int, size: tuple[int, int] | None = None
) -> np.ndarray | TiledFrame:
    """Decode and preprocess in one call (one thread-pool hop for both, when the caller makes one); a model with
    a ROI or tiles gets the frame cut into them (a frame that cannot hold them is refused, FrameGeometryError)."""
    image = decode_frame(data, spec, max_pixels, size)
    if spec.tiling is not None:
        return preprocess_tiles(image, spec)
    return preprocess(image, spec)


def decodes_quickly(size: tuple[int, int]) -> bool:
    """Small enough to decode on the event loop (about a millisecond for a camera frame of up to ~1 MP) rather
    than pay a trip through the thread pool; anything larger goes to the pool so it never stalls other requests."""
    return size[0] * size[1] <= INLINE_DECODE_MAX_PIXELS
