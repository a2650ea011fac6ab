"""Tests for image decoding: formats, channel order, bit depth, alpha, corrupt input and the bomb guard."""

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.errors import ImageDecodeError, ImageTooLargeError
from inspection.imaging import decode_image, image_size_from_header, is_grayscale, read_image

LOSSLESS = [".png", ".bmp", ".tif", ".tiff"]
LOSSY = [".jpg", ".jpeg"]


def _encode(image: np.ndarray, suffix: str) -> bytes:
    ok, buffer = cv2.imencode(suffix, image)
    assert ok, suffix
    return buffer.tobytes()


def _gray_ramp(height: int = 24, width: int = 32) -> np.ndarray:
    return (np.arange(height * width).reshape(height, width) * 7 % 256).astype(np.uint8)


def _pure_red_bgr(height: int = 24, width: int = 32) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 2] = 255  # OpenCV stores BGR, so channel 2 is red
    return image


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of width x height zeros: ~50 KB on disk, 400 megapixels once decoded."""
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_chunk = 1000
    assert height % rows_per_chunk == 0
    idat = b"".join(compressor.compress(row * rows_per_chunk) for _ in range(height // rows_per_chunk))
    idat += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.mark.parametrize("suffix", LOSSLESS)
def test_lossless_gray_decodes_exactly_as_2d(suffix: str) -> None:
    gray = _gray_ramp()
    decoded = decode_image(_encode(gray, suffix))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (24, 32)
    np.testing.assert_array_equal(decoded, gray)


@pytest.mark.parametrize("suffix", LOSSY)
def test_jpeg_gray_decodes_as_2d(suffix: str) -> None:
    gray = np.full((24, 32), 90, np.uint8)
    decoded = decode_image(_encode(gray, suffix))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (24, 32)
    assert np.abs(decoded.astype(int) - 90).max() <= 2


@pytest.mark.parametrize("suffix", LOSSLESS)
def test_lossless_color_is_rgb_order(suffix: str) -> None:
    decoded = decode_image(_encode(_pure_red_bgr(), suffix))
    assert decoded.dtype == np.uint8
    assert decoded.shape == (24, 32, 3)
    assert (decoded[:, :, 0] == 255).all()
    assert (decoded[:, :, 1] == 0).all()
    assert (decoded[:, :, 2] == 0).all()


@pytest.mark.parametrize("suffix", LOSSY)
def test_jpeg_color_is_rgb_order(suffix: str) -> None:
    decoded = decode_image(_encode(_pure_red_bgr(), suffix))
    assert decoded.shape == (24, 32, 3)
    assert decoded[:, :, 0].min() >= 245  # red survives in channel 0
    assert decoded[:, :, 2].max() <= 10  # and blue stays dark


def test_color_channels_keep_distinct_values() -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[:, :] = (10, 20, 30)  # B, G, R
    decoded = decode_image(_encode(bgr, ".png"))
    assert decoded[0, 0].tolist() == [30, 20, 10]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_gray_is_scaled_to_8_bit(suffix: str) -> None:
    deep = np.array([[0, 65535, 257], [32768, 65534, 128], [129, 383, 400]], np.uint16)
    decoded = decode_image(_encode(deep, suffix))
    assert decoded.dtype == np.uint8
    assert decoded.tolist() == [[0, 255, 1], [128, 255, 0], [1, 1, 2]]  # rounds, does not truncate


def test_16_bit_color_is_scaled_and_rgb() -> None:
    bgr = np.zeros((4, 4, 3), np.uint16)
    bgr[:, :, 2] = 65535
    bgr[:, :, 0] = 257 * 10
    decoded = decode_image(_encode(bgr, ".png"))
    assert decoded.dtype == np.uint8
    assert decoded[0, 0].tolist() == [255, 0, 10]


def test_rgba_png_drops_alpha() -> None:
    bgra = np.zeros((16, 16, 4), np.uint8)
    bgra[:, :, 2] = 255  # red
    bgra[:, :, 3] = 0  # fully transparent: the color must survive anyway
    decoded = decode_image(_encode(bgra, ".png"))
    assert decoded.shape == (16, 16, 3)
    assert decoded[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_is_a_decode_error(suffix: str) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(noisy, suffix)
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


def test_empty_bytes_is_a_decode_error() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_text_bytes_is_a_decode_error() -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(b"this is a text file, not a picture\n" * 20)


def test_png_bomb_is_refused_from_the_header() -> None:
    bomb = _png_bomb()
    assert len(bomb) < 200_000
    assert image_size_from_header(bomb) == (20_000, 20_000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        decode_image(bomb)
    assert time.perf_counter() - start < 0.5  # decoding 400 MP would take far longer


def test_max_pixels_is_respected_both_ways() -> None:
    data = _encode(_gray_ramp(10, 10), ".png")
    assert decode_image(data, max_pixels=100).shape == (10, 10)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=99)


def test_read_image_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "part.bmp"
    path.write_bytes(_encode(_pure_red_bgr(), ".bmp"))
    assert read_image(path)[0, 0].tolist() == [255, 0, 0]


def test_read_image_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken-part-17.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match=r"broken-part-17\.png"):
        read_image(path)


def test_read_image_too_large_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "huge-frame.png"
    path.write_bytes(_encode(_gray_ramp(10, 10), ".png"))
    with pytest.raises(ImageTooLargeError, match=r"huge-frame\.png"):
        read_image(path, max_pixels=50)


def test_is_grayscale() -> None:
    gray = _gray_ramp(8, 8)
    assert is_grayscale(gray)
    assert is_grayscale(np.repeat(gray[:, :, None], 3, axis=2))
    color = np.repeat(gray[:, :, None], 3, axis=2)
    color[3, 4, 1] += 1  # one pixel differs in one channel
    assert not is_grayscale(color)
    blue_only = np.zeros((8, 8, 3), np.uint8)
    blue_only[:, :, 2] = 200
    assert not is_grayscale(blue_only)
