"""Static INT8 quantization of an exported classifier (QDQ, per-channel weights, calibrated on real images).

Activations are quantized as unsigned 8 bit: on the x86 CPUs here ONNX Runtime's signed-activation kernels ran
2.4x slower than QUInt8 ones. The quantized model is only a candidate: the caller's accuracy gate decides.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from inspection.preprocessing import PreprocessSpec, preprocess


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds decoded training images, through the shared preprocessing, to the calibrator one at a time."""

    def __init__(self, images: Sequence[np.ndarray], spec: PreprocessSpec, input_name: str = "image"):
        self._images = images
        self._spec = spec
        self._input_name = input_name
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._images):
            return None
        image = self._images[self._position]
        self._position += 1
        return {self._input_name: preprocess(image, self._spec)[None]}

    def rewind(self) -> None:
        self._position = 0


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration_images: Sequence[np.ndarray], spec: PreprocessSpec
) -> Path:
    """Write an INT8 QDQ model of `fp32_path` (the un-optimized export) to `out_path`, keeping its metadata."""
    if not calibration_images:
        raise ValueError("INT8 calibration needs at least one image")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quantized = Path(work) / "quantized.onnx"
        # Shape inference and constant folding first, as ONNX Runtime recommends before static quantization.
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            ImageCalibrationReader(calibration_images, spec),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(quantized))
        source = onnx.load(str(fp32_path), load_external_data=False)
        del model.metadata_props[:]
        model.metadata_props.extend(source.metadata_props)
        onnx.save(model, str(quantized))
        quantized.replace(out_path)
    return out_path
