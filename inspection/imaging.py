"""Decoding image files and bytes into uint8 arrays: the one place that knows about file formats.

Output convention: uint8, either HxW (grayscale) or HxWx3 in RGB order. 16-bit images are scaled to 8 bits;
alpha is dropped (inspection cameras have no transparency, a PNG export tool may add one).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inspection.errors import ImageDecodeError, ImageTooLargeError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 50_000_000

# PIL reads only the header on open; its own bomb check would raise a warning-or-error of its own.
Image.MAX_IMAGE_PIXELS = None


def image_size_from_header(data: bytes) -> tuple[int, int]:
    """(width, height) declared in the image header, without decoding pixels."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Exception as exc:  # PIL raises many types for garbage input
        raise ImageDecodeError("not a readable image (PNG, JPEG, BMP or TIFF expected)") from exc


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # Round-to-nearest keeps 0->0 and 65535->255.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32))
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(finite * scale, 0, 255).astype(np.uint8)
    raise ImageDecodeError(f"unsupported pixel type {image.dtype}")


def _to_gray_or_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(f"unsupported image shape {image.shape}")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into uint8 gray (HxW) or RGB (HxWx3); refuse bombs before allocating pixels."""
    if not data:
        raise ImageDecodeError("empty image")
    width, height = image_size_from_header(data)
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.size == 0:
        raise ImageDecodeError("image data is corrupt or truncated")
    return _to_gray_or_rgb(_to_uint8(image))


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode an image file (see `decode_image`); errors name the file."""
    try:
        return decode_image(Path(path).read_bytes(), max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc
    except ImageTooLargeError as exc:
        raise ImageTooLargeError(f"{path}: {exc}") from exc


def is_grayscale(image: np.ndarray) -> bool:
    """True for single-channel images and for 3-channel images whose channels are identical."""
    if image.ndim == 2:
        return True
    return bool(np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2]))
