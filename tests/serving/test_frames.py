"""Frame decoding for serving: content types, bombs, and reduced decoding that matches the full path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.errors import ImageDecodeError, ImageTooLargeError
from inspection.imaging import decode_image
from inspection.preprocessing import PreprocessSpec, preprocess
from serving.frames import UnsupportedMediaType, check_content_type, decode_frame, reduction_factor

GRAY = PreprocessSpec(image_size=64, color_mode="gray")


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def _scene(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((np.sin(x / 37.0) + np.cos(y / 23.0)) * 60 + 128).astype(np.uint8)


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png; charset=binary", "IMAGE/TIFF"])
def test_image_content_types_are_accepted(content_type: str) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/octet-stream", "image/gif"])
def test_other_content_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(content_type)


def test_reduction_keeps_twice_the_model_input() -> None:
    assert reduction_factor(640, 480, 224) == 2  # 480 / 4 = 120 < 224
    assert reduction_factor(4000, 3000, 64) == 8
    assert reduction_factor(200, 200, 224) == 1


def test_reduced_decoding_gives_the_same_network_input_as_full_decoding() -> None:
    data = _jpeg(_scene(960, 1280))
    reduced = decode_frame(data, GRAY, max_pixels=10_000_000)
    assert reduced.shape == (120, 160)  # decoded at 1/8 inside the JPEG decoder
    full = decode_image(data)
    difference = np.abs(preprocess(reduced, GRAY) - preprocess(full, GRAY))
    # Inputs are in [-1, 1]; DCT-domain scaling and INTER_AREA differ by rounding-level amounts.
    assert float(difference.mean()) < 0.02


def test_bombs_and_garbage_are_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_frame(_jpeg(_scene(600, 800)), GRAY, max_pixels=100_000)
    with pytest.raises(ImageDecodeError):
        decode_frame(b"this is text, not an image", GRAY, max_pixels=10_000_000)
    with pytest.raises(ImageDecodeError):
        decode_frame(_jpeg(_scene(960, 1280))[:2000], GRAY, max_pixels=10_000_000)
