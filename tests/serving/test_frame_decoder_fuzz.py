"""Property-based test of the frame decoder: any bytes (random, or a real PNG/JPEG/BMP/TIFF with bytes changed,
cut or appended) either become a model input or raise the user error that maps to a 4xx; never anything else."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec
from serving.frames import frame_to_inputs

MAX_PIXELS = 4_000_000
SPECS = (PreprocessSpec(image_size=64, color_mode="gray"), PreprocessSpec(image_size=64, color_mode="color"))


def _encoded(extension: str, color: bool) -> bytes:
    shape = (48, 40, 3) if color else (48, 40)
    ok, data = cv2.imencode(extension, np.random.default_rng(3).integers(0, 255, shape, dtype=np.uint8))
    assert ok
    return data.tobytes()


SEEDS = [_encoded(ext, color) for ext in (".png", ".jpg", ".bmp", ".tif") for color in (False, True)]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A real encoded image with a few bytes overwritten, then cut short or extended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


def _decode_or_refuse(data: bytes, spec: PreprocessSpec) -> None:
    try:
        inputs = frame_to_inputs(data, spec, MAX_PIXELS)
    except InspectionError:
        return  # a 400/413/415 with a message
    assert inputs.shape[-2:] == (spec.image_size, spec.image_size) and np.isfinite(inputs).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_frames(), color=st.booleans())
def test_mutated_images_never_crash_the_decoder(data: bytes, color: bool) -> None:
    _decode_or_refuse(data, SPECS[color])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512), color=st.booleans())
def test_random_bytes_never_crash_the_decoder(data: bytes, color: bool) -> None:
    _decode_or_refuse(data, SPECS[color])


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_the_seeds_themselves_decode(seed: int) -> None:
    assert frame_to_inputs(SEEDS[seed], SPECS[0], MAX_PIXELS).shape[-2:] == (64, 64)
