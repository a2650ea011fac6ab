"""Micro-batching inference engine for one served model: asyncio API outside, one ONNX Runtime worker thread inside.

Why micro-batching: under load one ORT call on N frames costs far less than N calls on one, so throughput rises
with the batch; the latency price is bounded by `max_wait_ms` (the longest a lone frame waits for company). On 2
CPU cores batches above ~8 did not raise throughput further, hence the default. Torch-free, as all of serving.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspection.preprocessing import PreprocessSpec
from models.onnx_runtime import OnnxScorer
from serving.worker_queue import collect_batch, settle


@dataclass(frozen=True)
class Verdict:
    """One frame's result, with the model version and batch size that produced it."""

    defect_probability: float
    defect_type: str | None  # argmax of the type probabilities when flagged, else None
    is_defect: bool  # defect_probability >= threshold
    threshold: float
    model_version: int
    batch_size: int  # size of the batch this frame was scored in (for metrics)
    # Where the defect is, when the model exports an anomaly map: uint8 (S, S) at the model input size, 255 = most
    # defect-like (1 byte a pixel keeps a queue of verdicts small). None for models without the output.
    anomaly_map: np.ndarray | None = field(default=None, compare=False, repr=False)


class EngineOverloaded(Exception):  # noqa: N818 - the name is the HTTP layer's contract
    """The bounded queue is full; the HTTP layer answers 503 with Retry-After."""


class EngineClosed(Exception):  # noqa: N818 - the name is the HTTP layer's contract
    """The engine is closing or closed and takes no new frames."""


@dataclass(frozen=True, slots=True)
class _Frame:
    inputs: np.ndarray
    future: asyncio.Future[Verdict]
    loop: asyncio.AbstractEventLoop


_STOP = object()  # queued by close(): FIFO puts it behind every accepted frame, so all of them are answered first


def _servable(
    scorer: OnnxScorer, model_version: int | None, threshold: float | None = None
) -> tuple[OnnxScorer, int, float]:
    """(scorer, version, threshold), checking the model carries what a verdict needs; `threshold` (QA's served
    threshold) replaces the one in the model's metadata."""
    version = model_version if model_version is not None else scorer.metadata.get("model_version")
    served = scorer.threshold if threshold is None else threshold
    if version is None or served is None:
        raise ValueError("a served model needs a model_version (given or in its metadata) and a calibrated threshold")
    return scorer, int(version), float(served)


class InferenceEngine:
    """Queue frames from async code; a worker thread scores them in micro-batches on the current model."""

    def __init__(
        self,
        scorer: OnnxScorer,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 2.0,
        queue_size: int = 64,
        model_version: int | None = None,
        threshold: float | None = None,
    ):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be at least 1 and max_wait_ms non-negative")
        # One tuple, replaced whole by swap(): the worker reads model, version and threshold in one step.
        self._current = _servable(scorer, model_version, threshold)
        self._threshold_override = threshold
        self._max_batch, self._max_wait_s, self._queue_size = max_batch, max_wait_ms / 1000, queue_size
        # Bounded: overload is refused at once (503), never piled up; +1 slot kept free for close()'s stop marker.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size + 1)
        # The lock makes "closed?", "full?" and "enqueue" one step against close().
        self._accepting, self._closed = threading.Lock(), False
        # Daemon: an engine nobody closed must not keep the interpreter alive at exit.
        self._thread = threading.Thread(target=self._run, name="inference-engine", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Frames waiting for a batch (not those being scored; after close(), plus the stop marker)."""
        return self._queue.qsize()

    @property
    def model_version(self) -> int:
        """Version of the model that scores the next batch."""
        return self._current[1]

    @property
    def threshold(self) -> float:
        """Decision threshold of the current model: QA's served threshold when one is set, else its own."""
        return self._current[2]

    @property
    def defect_types(self) -> list[str]:
        """Defect type names of the current model, in the order of its type probabilities."""
        return list(self._current[0].defect_types)

    @property
    def spec(self) -> PreprocessSpec:
        """Preprocessing of the current model; callers preprocess with it before submit()."""
        return self._current[0].spec

    async def submit(self, inputs: np.ndarray) -> Verdict:
        """Score one preprocessed CHW float32 frame; raises EngineOverloaded at once when the queue is full."""
        frame_inputs = np.asarray(inputs, dtype=np.float32)  # its shape is checked against the model that scores it
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Verdict] = loop.create_future()
        with self._accepting:
            if self._closed:
                raise EngineClosed("the inference engine is closed")
            if self._queue.qsize() >= self._queue_size:  # safe: all puts hold the lock, the worker only takes
                raise EngineOverloaded(f"inference queue full ({self._queue_size} frames waiting)")
            self._queue.put_nowait(_Frame(frame_inputs, future, loop))
        return await future

    @property
    def threshold_override(self) -> float | None:
        """QA's served threshold in use instead of the model's metadata threshold, or None."""
        return self._threshold_override

    def set_threshold(self, threshold: float | None) -> None:
        """Score with `threshold` from the next batch on (None: the model's own), without reloading the model;
        frames already in a batch finish on the old one."""
        scorer, version, _ = self._current
        self._current = _servable(scorer, version, threshold)
        self._threshold_override = threshold

    def swap(self, scorer: OnnxScorer, model_version: int, threshold: float | None = None) -> None:
        """Serve `scorer` from the next batch on; frames already in a batch finish on the old model."""
        if self._closed:
            raise EngineClosed("the inference engine is closed")
        self._current = _servable(scorer, model_version, threshold)
        self._threshold_override = threshold

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, answer every queued and in-flight frame, then stop the worker."""
        with self._accepting:
            if not self._closed:
                self._closed = True
                self._queue.put_nowait(_STOP)  # into the slot submit() leaves free
        # Joined off the event loop, which must stay free to receive the last answers.
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"inference worker did not finish within {timeout}s")

    def _run(self) -> None:
        """Worker loop: collect, score, answer; exits after the stop marker and the frames before it."""
        stopping = False
        while not stopping:
            frames, stopping = collect_batch(self._queue, self._max_batch, _STOP, self._max_wait_s)
            self._score(frames)

    def _score(self, frames: list[_Frame]) -> None:
        """Score one batch on the model current now; failures go to these frames only, never the worker."""
        scorer, version, threshold = self._current  # read once: a swap now takes effect from the next batch
        expected = (3, scorer.spec.image_size, scorer.spec.image_size)
        # A caller that gave up (timeout, disconnect) cancelled its future: don't spend the cores on it.
        live = [frame for frame in frames if not frame.future.cancelled()]
        fitting = [frame for frame in live if frame.inputs.shape == expected]
        for frame in live:
            if frame.inputs.shape != expected:  # e.g. preprocessed for the model before a swap: fails alone
                _settle(frame, ValueError(f"frame shape {frame.inputs.shape} does not match the model's {expected}"))
        if not fitting:
            return
        try:
            # ORT releases the GIL while it runs, so the event loop keeps accepting frames meanwhile.
            defect, types, maps = scorer.score_batch_with_maps(np.stack([frame.inputs for frame in fitting]))
            verdicts, size = [], len(fitting)
            quantized = _to_uint8(maps) if maps is not None else [None] * size
            for probability, type_probabilities, anomaly_map in zip(defect.tolist(), types, quantized, strict=True):
                flagged = probability >= threshold
                best = int(np.argmax(type_probabilities))
                name = scorer.defect_types[best] if best < len(scorer.defect_types) else str(best)
                verdicts.append(
                    Verdict(probability, name if flagged else None, flagged, threshold, version, size, anomaly_map)
                )
        except Exception as error:
            for frame in fitting:
                _settle(frame, error)
            return
        for frame, verdict in zip(fitting, verdicts, strict=True):
            _settle(frame, verdict)


def _to_uint8(maps: np.ndarray) -> list[np.ndarray]:
    """float maps in [0, 1] (N, S, S) -> one uint8 (S, S) array per frame, 255 = 1.0."""
    scaled = np.rint(np.clip(maps, 0.0, 1.0) * 255.0).astype(np.uint8)
    return list(scaled)


def _settle(frame: _Frame, outcome: Verdict | BaseException) -> None:
    settle(frame.future, frame.loop, outcome)
