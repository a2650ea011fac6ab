"""Static INT8 quantization of an exported classifier (QDQ, per-channel weights, calibrated on real images).

Activations are quantized as unsigned 8 bit: on the x86 CPUs here ONNX Runtime's signed-activation kernels ran
2.4x slower than QUInt8 ones. The activation ranges come from one of ONNX Runtime's calibrators:

- "minmax": the full observed range; one bright outlier image widens every step of that tensor.
- "entropy": the range that keeps the KL divergence between the float and quantized histograms smallest.
- "percentile": the range between the 0.0005th and 99.9995th percentiles (asymmetric, as activations are
  unsigned here: a symmetric range would waste half the codes of a post-ReLU tensor).

Weights are quantized to 7 bits (`reduce_range`). With 8-bit weights, ONNX Runtime's u8s8 kernels on CPUs
without VNNI (AVX2, and AVX-512 without VNNI) add pairs of products into 16 bits with saturation, and the same
file then scores differently there than on a VNNI CPU: on ELPV, on 2 AVX2 cores, 8-bit weights lost 0.022 test
AUROC and flipped a quarter of the verdicts, where on AVX-512 VNNI cores they lost 0.002-0.006 (docs/int8.md). 7-bit
weights cannot saturate, so the gate's evidence holds on whichever CPU a replica runs. The price is paid on VNNI
CPUs, where 8 bits would have been exact: on ELPV, on 2 AVX-512 VNNI cores, the same trained model lost 0.0068
test AUROC with 7-bit weights against 0.0005 with 8-bit ones, and flipped 30 verdicts against 20
(docs/decisions/0002-seven-bit-int8-weights.md).

The quantized model is only a candidate: the caller's accuracy gate decides.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

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

CalibrationName = Literal["minmax", "entropy", "percentile"]
CALIBRATION_METHODS: tuple[CalibrationName, ...] = get_args(CalibrationName)
# Percentile agreed best with fp32 in two probes on ELPV (pretrained Lite0 at 224 px, 256 images): rank
# correlation of the defect logit 0.961 vs minmax 0.945 and entropy 0.944, and on a linear probe it kept the
# flipped verdicts balanced where minmax's leaned one way. It costs 1.5-2x minmax's time and twice its memory.
DEFAULT_CALIBRATION_METHOD: CalibrationName = "percentile"
# Enough images for every defect type and lighting to shape the activation ranges (was 128); each costs one
# forward pass: 256 took 30-90 s for EfficientNet-Lite0 at 224 px on two busy cores.
DEFAULT_CALIBRATION_IMAGES = 256
DEFAULT_PERCENTILE = 99.999
# ONNX Runtime's histogram calibrators keep every intermediate activation of every image until they reduce them:
# 8.9 GB for 128 images at 224 px. Fed in chunks of at most this many, and merged, the peak was 1.9 GB.
CALIBRATION_CHUNK = 16

_ORT_METHOD = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds decoded training images, through the shared preprocessing, to the calibrator one at a time.

    `set_range` limits it to a slice of the images, which is how ONNX Runtime feeds it in chunks.
    """

    def __init__(self, images: Sequence[np.ndarray], spec: PreprocessSpec, input_name: str = "image"):
        self._images = images
        self._spec = spec
        self._input_name = input_name
        self._position = 0
        self._end = len(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= self._end:
            return None
        image = self._images[self._position]
        self._position += 1
        return {self._input_name: preprocess(image, self._spec)[None]}

    def __len__(self) -> int:
        return len(self._images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._position, self._end = start_index, min(end_index, len(self._images))

    def rewind(self) -> None:
        self._position, self._end = 0, len(self._images)


def calibration_indices(
    labels: Sequence[Hashable], n_images: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> list[int]:
    """Up to `n_images` positions of `labels`, spread over the labels in proportion, seeded; sorted.

    Proportional by label so rare defect types shape the activation ranges too, not only the common good parts.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    rng = np.random.default_rng(seed)
    positions = np.empty(len(labels))
    for label in dict.fromkeys(labels):  # first-seen order, not set order: hashes of str vary per process
        members = rng.permutation([i for i, value in enumerate(labels) if value == label])
        # The k-th of g members sits at (k + 0.5) / g: taking the lowest positions fills every label in turn.
        positions[members] = (np.arange(members.size) + 0.5) / members.size
    order = np.lexsort((rng.random(len(labels)), positions))  # ties between labels broken at random
    return sorted(int(i) for i in order[:n_images])


def _chunk_size(n_images: int) -> int:
    """The largest chunk <= CALIBRATION_CHUNK that divides the image count (ONNX Runtime requires it)."""
    return next(size for size in range(min(CALIBRATION_CHUNK, n_images), 0, -1) if n_images % size == 0)


def calibration_options(method: CalibrationName, n_images: int) -> dict[str, Any]:
    """The `extra_options` of `quantize_static` for this calibration method and image count."""
    if method not in _ORT_METHOD:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    options: dict[str, Any] = {"CalibStridedMinMax": _chunk_size(n_images)}  # despite its name: every method
    if method == "percentile":
        # ONNX Runtime's percentile calibrator defaults to a symmetric range; activations here are unsigned.
        options |= {"CalibPercentile": DEFAULT_PERCENTILE, "CalibTensorRangeSymmetric": False}
    return options


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calibration_images: Sequence[np.ndarray],
    spec: PreprocessSpec,
    *,
    method: CalibrationName = DEFAULT_CALIBRATION_METHOD,
) -> Path:
    """Write an INT8 QDQ model of `fp32_path` (the un-optimized export) to `out_path`, keeping its metadata.

    Every image in `calibration_images` is used; choosing them (and how many) is the caller's job.
    """
    if not calibration_images:
        raise ValueError("INT8 calibration needs at least one image")
    extra_options = calibration_options(method, len(calibration_images))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quantized = Path(work) / "quantized.onnx"
        # Shape inference and constant folding first, as ONNX Runtime recommends before static quantization.
        quant_pre_process(str(fp32_path), str(prepared))
        # The histogram calibrators print per-tensor tables to stdout; keep the CLI's output readable.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared),
                str(quantized),
                ImageCalibrationReader(calibration_images, spec),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=True,  # 7-bit weights: no u8s8 saturation on CPUs without VNNI (module docstring)
                calibrate_method=_ORT_METHOD[method],
                extra_options=extra_options,
            )
        model = onnx.load(str(quantized))
        source = onnx.load(str(fp32_path), load_external_data=False)
        del model.metadata_props[:]
        model.metadata_props.extend(source.metadata_props)
        onnx.save(model, str(quantized))
        quantized.replace(out_path)
    return out_path
