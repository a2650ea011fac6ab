"""Tests for the shared preprocessing: channels, size, value range and tensor layout."""

import numpy as np
import pytest

from inspection.preprocessing import PreprocessSpec, normalize, prepare_image, preprocess

SIZE = 32


def _gray(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 1000 + width).integers(0, 256, (height, width), dtype=np.uint8)


def _color(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 1000 + width + 1).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(17, 45), (45, 17), (101, 99), (SIZE, SIZE), (7, 7)])
@pytest.mark.parametrize("color_mode", ["gray", "color"])
def test_gray_input_becomes_square_uint8_with_identical_channels(shape, color_mode) -> None:
    prepared = prepare_image(_gray(*shape), PreprocessSpec(image_size=SIZE, color_mode=color_mode))
    assert prepared.shape == (SIZE, SIZE, 3)
    assert prepared.dtype == np.uint8
    assert prepared.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(prepared[:, :, 0], prepared[:, :, 1])
    np.testing.assert_array_equal(prepared[:, :, 1], prepared[:, :, 2])


@pytest.mark.parametrize("shape", [(17, 45), (101, 99), (SIZE, SIZE)])
def test_color_input_becomes_square_uint8_and_stays_color(shape) -> None:
    prepared = prepare_image(_color(*shape), PreprocessSpec(image_size=SIZE, color_mode="color"))
    assert prepared.shape == (SIZE, SIZE, 3)
    assert prepared.dtype == np.uint8
    assert not np.array_equal(prepared[:, :, 0], prepared[:, :, 1])


def test_color_input_at_size_is_untouched() -> None:
    image = _color(SIZE, SIZE)
    np.testing.assert_array_equal(prepare_image(image, PreprocessSpec(image_size=SIZE)), image)


def test_color_input_of_gray_product_becomes_luminance_in_three_channels() -> None:
    red = np.zeros((SIZE, SIZE, 3), np.uint8)
    red[:, :, 0] = 255
    prepared = prepare_image(red, PreprocessSpec(image_size=SIZE, color_mode="gray"))
    assert prepared.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(prepared[:, :, 0], prepared[:, :, 1])
    np.testing.assert_array_equal(prepared[:, :, 1], prepared[:, :, 2])
    # Luminance of pure red (RGB order) is ~0.299 * 255 = 76; reading it as BGR would give ~29 (blue weight).
    assert abs(int(prepared[0, 0, 0]) - 76) <= 1


def test_resize_keeps_a_constant_image_constant() -> None:
    flat = np.full((61, 83), 123, np.uint8)
    prepared = prepare_image(flat, PreprocessSpec(image_size=SIZE))
    assert (prepared == 123).all()


def test_normalize_maps_range_to_minus_one_plus_one_in_chw() -> None:
    prepared = np.zeros((4, 6, 3), np.uint8)
    prepared[:, :, 1] = 255
    prepared[0, 0, 2] = 128
    out = normalize(prepared, PreprocessSpec(image_size=4))
    assert out.dtype == np.float32
    assert out.shape == (3, 4, 6)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out[0], -1.0)
    np.testing.assert_array_equal(out[1], 1.0)
    assert out[2, 0, 0] == pytest.approx(128 / 127.5 - 1)
    assert out[2, 1, 1] == -1.0


def test_normalize_batch_is_nchw() -> None:
    batch = np.stack([np.full((5, 7, 3), value, np.uint8) for value in (0, 255)])
    batch[1, 2, 3, 0] = 0
    out = normalize(batch, PreprocessSpec(image_size=5))
    assert out.shape == (2, 3, 5, 7)
    assert (out[0] == -1.0).all()
    assert out[1, 0, 2, 3] == -1.0
    assert out[1, 1, 2, 3] == 1.0


def test_preprocess_equals_normalize_of_prepare_image() -> None:
    for image, mode in ((_gray(41, 29), "gray"), (_color(50, 70), "color"), (_color(50, 70), "gray")):
        spec = PreprocessSpec(image_size=SIZE, color_mode=mode)
        expected = normalize(prepare_image(image, spec), spec)
        out = preprocess(image, spec)
        assert out.shape == (3, SIZE, SIZE)
        np.testing.assert_array_equal(out, expected)


def test_spec_round_trips_through_dict() -> None:
    spec = PreprocessSpec(image_size=160, color_mode="gray", mean=100.0, std=50.0)
    data = spec.to_dict()
    assert data["image_size"] == 160
    assert data["color_mode"] == "gray"
    assert set(data) == {"image_size", "color_mode", "channel_order", "mean", "std", "interpolation", "layout"}
    assert PreprocessSpec.from_dict(data) == spec
    assert PreprocessSpec.from_dict(PreprocessSpec().to_dict()) == PreprocessSpec()
    assert PreprocessSpec.from_dict(data) != PreprocessSpec()
