"""Scoring an exported classifier with ONNX Runtime; what the server loads.

Torch-free on purpose (DESIGN: the serving path never imports torch): only numpy, onnxruntime and
`inspection`. Everything needed to preprocess for the model is read from the ONNX file's own metadata, so a
served model cannot drift from the preprocessing it was exported with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inspection.batching import preprocessed_batches
from inspection.errors import InspectionError
from inspection.preprocessing import PreprocessSpec

METADATA_KEY_PREFIX = "inspection."
INPUT_NAME = "image"
OUTPUT_NAMES = ("defect_probability", "type_probabilities")  # what every served model has, in this order
# Optional third output: float32 (N, 1, S, S) at the input size S, in [0, 1], higher = more defect-like.
MAP_OUTPUT = "anomaly_map"
_PROVIDERS = ["CPUExecutionProvider"]


def decode_metadata(custom_map: Mapping[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (JSON-encoded values under the prefix) -> decoded dict without the prefix."""
    return {
        key.removeprefix(METADATA_KEY_PREFIX): json.loads(value)
        for key, value in custom_map.items()
        if key.startswith(METADATA_KEY_PREFIX)
    }


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """The `inspection.*` metadata of an ONNX file, decoded, as ONNX Runtime (i.e. the server) sees it."""
    options = ort.SessionOptions()
    # Only the metadata is wanted: skip graph optimization and keep the session as cheap as possible.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=_PROVIDERS)
    return decode_metadata(session.get_modelmeta().custom_metadata_map)


class OnnxScorer:
    """One CPU InferenceSession over an exported classifier, with the preprocessing embedded in it."""

    def __init__(self, path: Path, threads: int | None = None, spinning: bool = True):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        # Spinning (ORT's default) keeps idle intra-op threads busy-waiting for the next op: the fastest choice
        # when ORT has the cores to itself, a loss when the same cores must also decode frames and answer HTTP.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        # One request's graph is a chain of convolutions: parallel branches would only contend for cores.
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=_PROVIDERS)
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "preprocess" not in self.metadata:
            raise InspectionError(f"{path}: no '{METADATA_KEY_PREFIX}preprocess' metadata; not an inspection export")
        self.spec = PreprocessSpec.from_dict(self.metadata["preprocess"])
        self.defect_types: list[str] = list(self.metadata.get("defect_types", []))
        threshold = self.metadata.get("threshold")
        self.threshold: float | None = None if threshold is None else float(threshold)
        self._check_signature()

    def _check_signature(self) -> None:
        # Fail at load time, with the reason, rather than on the first frame with an ORT shape error.
        inputs = {node.name: node.shape for node in self.session.get_inputs()}
        outputs = {node.name: node.shape for node in self.session.get_outputs()}
        if INPUT_NAME not in inputs or not set(OUTPUT_NAMES) <= set(outputs):
            raise InspectionError(
                f"{self.path}: expected input '{INPUT_NAME}' and outputs {list(OUTPUT_NAMES)}, "
                f"found {sorted(inputs)} -> {sorted(outputs)}"
            )
        self._type_dim = outputs[OUTPUT_NAMES[1]][1]
        height, width = inputs[INPUT_NAME][2:4]
        size = self.spec.image_size
        self.has_map = MAP_OUTPUT in outputs
        if self.has_map:
            map_shape = list(outputs[MAP_OUTPUT])
            expected = [1, size, size]
            if len(map_shape) != 4 or any(
                isinstance(dim, int) and dim != want for dim, want in zip(map_shape[1:], expected, strict=True)
            ):
                raise InspectionError(
                    f"{self.path}: output '{MAP_OUTPUT}' has shape {map_shape}, expected [batch, 1, {size}, {size}]"
                )
        if any(isinstance(dim, int) and dim != size for dim in (height, width)):
            raise InspectionError(
                f"{self.path}: the graph takes {height}x{width} inputs but its preprocessing metadata "
                f"resizes to {size}x{size}"
            )

    @property
    def num_defect_types(self) -> int:
        """K, the width of `type_probabilities`."""
        return self._type_dim if isinstance(self._type_dim, int) else len(self.defect_types)

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed float32 NxCxHxW -> (defect probability (N,), type probabilities (N, K))."""
        if inputs.ndim != 4:
            raise ValueError(f"expected an NxCxHxW batch, got shape {inputs.shape}")
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        defect, types = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return np.asarray(defect), np.asarray(types)

    def score_batch_with_maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As score_batch, plus the anomaly maps (N, S, S) float32 in [0, 1] when the model has them, else None."""
        if not self.has_map:
            defect, types = self.score_batch(inputs)
            return defect, types, None
        if inputs.ndim != 4:
            raise ValueError(f"expected an NxCxHxW batch, got shape {inputs.shape}")
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        defect, types, maps = self.session.run([*OUTPUT_NAMES, MAP_OUTPUT], {INPUT_NAME: batch})
        # Clipped: a quantized (INT8) graph may overshoot [0, 1] by a quantization step.
        maps = np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)
        return np.asarray(defect), np.asarray(types), maps.reshape(maps.shape[0], *maps.shape[-2:])

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run each batch size once on a blank input: ORT's first run of a shape allocates and plans, and that
        pause belongs at load or swap time, not on a line's first frame."""
        size = self.spec.image_size
        for batch in batch_sizes:
            self.score_batch(np.zeros((batch, 3, size, size), np.float32))

    def score_images(self, images: Sequence[np.ndarray], batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Decoded uint8 gray/RGB images of any size -> (defect probability (N,), type probabilities (N, K))."""
        defect, types, _ = self._score_images(images, batch_size, with_maps=False)
        return defect, types

    def score_images_with_maps(
        self, images: Sequence[np.ndarray], batch_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """As score_images, plus the anomaly maps (N, S, S) when the model has them, else None."""
        return self._score_images(images, batch_size, with_maps=True)

    def _score_images(
        self, images: Sequence[np.ndarray], batch_size: int, with_maps: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        defects: list[np.ndarray] = []
        types: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        for batch in preprocessed_batches(images, self.spec, batch_size):
            if with_maps:
                defect, type_probs, map_batch = self.score_batch_with_maps(batch)
                if map_batch is not None:
                    maps.append(map_batch)
            else:
                defect, type_probs = self.score_batch(batch)
            defects.append(defect)
            types.append(type_probs)
        size = self.spec.image_size
        if not defects:
            empty_maps = np.zeros((0, size, size), np.float32) if with_maps and self.has_map else None
            return np.zeros(0, np.float32), np.zeros((0, self.num_defect_types), np.float32), empty_maps
        return np.concatenate(defects), np.concatenate(types), np.concatenate(maps) if maps else None
