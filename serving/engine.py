"""Inference engine for one served model: asyncio API outside, ONNX Runtime runner threads inside.

Frames wait in one bounded queue; each runner thread takes what is waiting (up to `max_batch`, waiting at most
`max_wait_ms` for company) and scores it on the model's one session, whose runs release the GIL. Two ways to use
the cores: several runners on a single-threaded session (frames side by side, no intra-op synchronisation) or one
runner with an intra-op thread per core. On 2 cores with EfficientNet-Lite0 at 224 px the first won: ORT alone
ran 206-219 frames/s as two single-threaded runs of 1-2 frames against 160 as one 2-thread run of batches of 8
(benchmarks/engine_layouts.py; docs/decisions/0004-engine-runners-per-core.md); batches only pay where a call's fixed
cost is large against the model's. Torch-free, as all of serving.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspection.preprocessing import PreprocessSpec, TiledFrame
from inspection.tiling import stitch
from models.onnx_runtime import OnnxScorer
from serving.worker_queue import collect_batch, name_os_thread, settle, settle_all


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
    # defect-like. Only for flagged frames and those submitted with want_map (the only ones whose map is stored);
    # None otherwise, and for models without the output.
    anomaly_map: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The verdict as stored and answered: defect or pass."""
        return "defect" if self.is_defect else "pass"


class EngineOverloaded(Exception):  # noqa: N818 - the name is the HTTP layer's contract
    """The bounded queue is full; the HTTP layer answers 503 with Retry-After."""


class EngineClosed(Exception):  # noqa: N818 - the name is the HTTP layer's contract
    """The engine is closing or closed and takes no new frames."""


class _TiledJob:
    """One tiled frame split into parts that runners score side by side; the runner that finishes the last part
    forms the verdict. The first part to start pins the model, so a swap meanwhile cannot mix two models' tiles."""

    def __init__(self, frame: TiledFrame, parts: int) -> None:
        self.frame = frame
        self.model: tuple[OnnxScorer, int, float] | None = None
        self.results: list[tuple[np.ndarray, np.ndarray, np.ndarray | None] | None] = [None] * parts
        self.failed = False
        self.lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _TilePart:
    """Tiles [start, stop) of a tiled frame: what one runner scores of it."""

    job: _TiledJob
    index: int
    start: int
    stop: int

    @property
    def inputs(self) -> np.ndarray:
        return self.job.frame.inputs[self.start : self.stop]


@dataclass(frozen=True, slots=True)
class _Frame:
    inputs: np.ndarray | TiledFrame | _TilePart
    future: asyncio.Future[Verdict]
    loop: asyncio.AbstractEventLoop
    want_map: bool


# A tiled frame's tiles are split among the runners (one part each, contiguous) so that one frame keeps every core
# busy, not only several frames side by side; parts smaller than this are not worth a queue trip.
MIN_TILES_PER_PART = 8
# When a tiled frame is split (`split_tiles`): never, always (into a part per runner), or only across the runners
# the frames already in flight leave idle. `always` is the default: with two cameras posting 2448x2048 frames it
# served 70-72 tiles/s in four interleaved runs on 2 shared cores, against 52-73 for `idle runners` and 58-67 for
# `never` (docs/tiling.md): a frame split across both runners keeps them busy while the other camera's answer goes
# back and its next frame is decoded, where a whole frame's runner waits for its own camera.
SPLIT_NEVER, SPLIT_ALWAYS, SPLIT_IDLE_RUNNERS = "never", "always", "idle runners"
SPLIT_MODES = (SPLIT_NEVER, SPLIT_ALWAYS, SPLIT_IDLE_RUNNERS)
RUNNER_THREAD_NAME = "engine-runner"  # its name in the OS (top -H), where the scoring's CPU shows
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
        runners: int = 1,
        split_tiles: str = SPLIT_ALWAYS,
    ):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0 or runners < 1:
            raise ValueError("max_batch, queue_size and runners must be at least 1 and max_wait_ms non-negative")
        if split_tiles not in SPLIT_MODES:
            raise ValueError(f"split_tiles must be one of {', '.join(SPLIT_MODES)}, not {split_tiles!r}")
        # One tuple, replaced whole by swap(): the worker reads model, version and threshold in one step.
        self._current = _servable(scorer, model_version, threshold)
        self._threshold_override = threshold
        self._runners, self.split_tiles = runners, split_tiles
        self._max_batch, self._max_wait_s, self._queue_size = max_batch, max_wait_ms / 1000, queue_size
        # Bounded: overload is refused at once (503), never piled up; a slot per runner kept free for close()'s stop
        # markers.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size + runners)
        # The lock makes "closed?", "full?" and "enqueue" one step against close().
        self._accepting, self._closed = threading.Lock(), False
        self._in_flight = 0  # frames submitted, not yet answered; counted in `idle runners` mode only
        # Several runners score batches side by side on the one session (ORT allows concurrent runs), each on its
        # own core when the session has one intra-op thread. Daemons: an engine nobody closed must not keep the
        # interpreter alive at exit.
        self._threads = [
            threading.Thread(target=self._run, name=f"inference-engine-{i}", daemon=True) for i in range(runners)
        ]
        for thread in self._threads:
            thread.start()

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

    async def submit(self, inputs: np.ndarray | TiledFrame, want_map: bool = False) -> Verdict:
        """Score one preprocessed CHW float32 frame (or a tiled model's frame cut into its tiles); raises
        EngineOverloaded at once when the queue is full. The verdict carries the anomaly map when the frame is
        flagged, or always with `want_map`."""
        # The shape is checked against the model that scores it.
        frame_inputs = inputs if isinstance(inputs, TiledFrame) else np.asarray(inputs, dtype=np.float32)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Verdict] = loop.create_future()
        items = [_Frame(part, future, loop, want_map) for part in self._parts(frame_inputs)]
        with self._accepting:
            if self._closed:
                raise EngineClosed("the inference engine is closed")
            # safe: all puts hold the lock, the worker only takes; the parts of a split frame count one slot each
            # (at most `runners` of them, so the slots kept for close()'s markers stay free)
            if self._queue.qsize() + len(items) > self._queue_size:
                raise EngineOverloaded(f"inference queue full ({self._queue_size} frames waiting)")
            for item in items:
                self._queue.put_nowait(item)
            # Only `idle runners` reads the count; counting every frame would cost each one a second lock.
            tracked = self.split_tiles == SPLIT_IDLE_RUNNERS
            self._in_flight += tracked
        if not tracked:
            return await future
        try:
            return await future
        finally:
            with self._accepting:
                self._in_flight -= 1

    def _parts(self, inputs: np.ndarray | TiledFrame) -> list[np.ndarray | TiledFrame | _TilePart]:
        """What is queued for one frame: the frame, or a tiled frame's tiles in one contiguous part per runner (per
        runner left idle by the frames in flight, as `split_tiles` says)."""
        if not isinstance(inputs, TiledFrame) or self.split_tiles == SPLIT_NEVER:
            return [inputs]
        runners = self._runners if self.split_tiles == SPLIT_ALWAYS else self._runners - self._in_flight
        count = min(runners, len(inputs.boxes) // MIN_TILES_PER_PART, self._queue_size)
        if count < 2:
            return [inputs]
        job = _TiledJob(inputs, count)
        bounds = np.linspace(0, len(inputs.boxes), count + 1).round().astype(int).tolist()
        return [_TilePart(job, i, bounds[i], bounds[i + 1]) for i in range(count)]

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
                for _ in self._threads:  # one marker per runner, into the slots submit() leaves free
                    self._queue.put_nowait(_STOP)
        # Joined off the event loop, which must stay free to receive the last answers.
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            raise TimeoutError(f"inference worker did not finish within {timeout}s")

    def _run(self) -> None:
        """Worker loop: collect, score, answer; exits after the stop marker and the frames before it."""
        name_os_thread(RUNNER_THREAD_NAME)
        stopping = False
        while not stopping:
            # A tiled model scores one frame (or part) a run: a runner gathering a second part of the same frame
            # would leave the other runner idle.
            limit = 1 if self._current[0].spec.tiling is not None else self._max_batch
            frames, stopping = collect_batch(self._queue, limit, _STOP, self._max_wait_s)
            self._score(frames)

    def _score(self, frames: list[_Frame]) -> None:
        """Score one batch on the model current now; failures go to these frames only, never the worker."""
        scorer, version, threshold = self._current  # read once: a swap now takes effect from the next batch
        expected = (3, scorer.spec.image_size, scorer.spec.image_size)
        tiled = scorer.spec.tiling is not None
        # A caller that gave up (timeout, disconnect) cancelled its future: don't spend the cores on it.
        live = [frame for frame in frames if not frame.future.cancelled()]
        fitting = [frame for frame in live if _shape_of(frame.inputs, tiled) == expected]
        for frame in live:
            if (shape := _shape_of(frame.inputs, tiled)) != expected:  # e.g. preprocessed before a swap: fails alone
                _settle(frame, ValueError(f"frame shape {shape} does not match the model's {expected}"))
        if not fitting:
            return
        if tiled:
            for frame in fitting:
                if isinstance(frame.inputs, _TilePart):
                    self._score_part(frame, frame.inputs)
                else:
                    self._score_tiles(frame, scorer, version, threshold)
            return
        try:
            # ORT releases the GIL while it runs, so the event loop keeps accepting frames meanwhile.
            # A batch of one is a view of its frame, not a copy (np.stack copies).
            whole = [frame.inputs for frame in fitting if isinstance(frame.inputs, np.ndarray)]
            batch = whole[0][None] if len(whole) == 1 else np.stack(whole)
            defect, types, maps = scorer.score_batch_with_maps(batch)
            verdicts, size = [], len(fitting)
            for index, (frame, probability) in enumerate(zip(fitting, defect.tolist(), strict=True)):
                flagged = probability >= threshold
                name = None
                if flagged:
                    best = int(np.argmax(types[index]))
                    name = scorer.defect_types[best] if best < len(scorer.defect_types) else str(best)
                # Only maps that will be stored are quantized: most frames of a line pass and need none.
                drawn = _to_uint8(maps[index]) if maps is not None and (flagged or frame.want_map) else None
                verdicts.append(Verdict(probability, name, flagged, threshold, version, size, drawn))
        except Exception as error:
            settle_all([(frame.future, frame.loop, error) for frame in fitting])
            return
        settle_all([(frame.future, frame.loop, verdict) for frame, verdict in zip(fitting, verdicts, strict=True)])

    def _score_tiles(self, frame: _Frame, scorer: OnnxScorer, version: int, threshold: float) -> None:
        """A tiled frame: all its tiles in one run; the frame's score is their maximum (the defect is where the
        most defect-like tile is) and the tile maps are stitched over the whole frame, overlaps by maximum."""
        assert isinstance(frame.inputs, TiledFrame)
        tiles = frame.inputs
        try:
            defect, types, maps = scorer.score_batch_with_maps(tiles.inputs)
        except Exception as error:
            _settle(frame, error)
            return
        self._tiled_verdict(
            frame, tiles, (defect, types, None if maps is None else list(maps)), scorer, version, threshold
        )

    def _score_part(self, frame: _Frame, part: _TilePart) -> None:
        """One part of a split tiled frame on the model its first part pinned; the last part done forms the
        verdict from all of them (in tile order), a failed part fails the frame."""
        job = part.job
        with job.lock:
            if job.failed:
                return
            if job.model is None:
                job.model = self._current
            scorer, version, threshold = job.model
        try:
            result = scorer.score_batch_with_maps(part.inputs)
        except Exception as error:
            with job.lock:
                job.failed = True
            _settle(frame, error)
            return
        with job.lock:
            job.results[part.index] = result
            if any(r is None for r in job.results):
                return
        results = [r for r in job.results if r is not None]
        # The maps stay in their parts' arrays (a tile's map is a view): joined, they were a 20 MB copy per frame of
        # 99 tiles, made even for the passing frames whose maps are never stitched.
        part_maps = [r[2] for r in results]
        maps = None if any(m is None for m in part_maps) else [tile for m in part_maps if m is not None for tile in m]
        merged = (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]), maps)
        self._tiled_verdict(frame, job.frame, merged, scorer, version, threshold)

    def _tiled_verdict(
        self,
        frame: _Frame,
        tiles: TiledFrame,
        scored: tuple[np.ndarray, np.ndarray, Sequence[np.ndarray] | None],
        scorer: OnnxScorer,
        version: int,
        threshold: float,
    ) -> None:
        """A tiled frame's verdict from all its tiles' outputs (the maps one per tile, in tile order): the maximum
        tile, the maps stitched."""
        defect, types, maps = scored
        try:
            best = int(np.argmax(defect))
            probability = float(defect[best])
            flagged = probability >= threshold
            name = None
            if flagged:
                kind = int(np.argmax(types[best]))
                name = scorer.defect_types[kind] if kind < len(scorer.defect_types) else str(kind)
            drawn = None
            if maps is not None and (flagged or frame.want_map):
                drawn = _to_uint8(stitch(maps, tiles.boxes, tiles.height, tiles.width))
            verdict = Verdict(probability, name, flagged, threshold, version, len(tiles.boxes), drawn)
        except Exception as error:
            _settle(frame, error)
            return
        _settle(frame, verdict)


def _shape_of(inputs: np.ndarray | TiledFrame | _TilePart, tiled: bool) -> tuple[int, ...] | None:
    """The per-image input shape a queued frame holds (a tiled frame's tile shape), None when a tiled frame meets
    an untiled model or the other way round (the model was swapped since the frame was cut)."""
    if isinstance(inputs, _TilePart):
        return tuple(inputs.job.frame.inputs.shape[1:]) if tiled else None
    if isinstance(inputs, TiledFrame):
        return tuple(inputs.inputs.shape[1:]) if tiled else None
    return None if tiled else tuple(inputs.shape)


def _to_uint8(anomaly_map: np.ndarray) -> np.ndarray:
    """A float map in [0, 1] (S, S) -> uint8 (S, S), 255 = 1.0."""
    return np.rint(np.clip(anomaly_map, 0.0, 1.0) * 255.0).astype(np.uint8)


def _settle(frame: _Frame, outcome: Verdict | BaseException) -> None:
    settle(frame.future, frame.loop, outcome)


def engine_runners(configured: int, ort_threads: int, cores: int | None = None) -> int:
    """Runner threads for an engine: as configured, or (0) one per core its session's intra-op threads leave, at
    least one (`ort_threads` 0 means a thread per core, so one runner)."""
    if configured:
        return configured
    cores = cores or os.cpu_count() or 1
    return max(1, cores // ort_threads) if ort_threads else 1
