"""The challenger in shadow: scores every frame the champion answered, stores the score, never touches the answer.

The line's answer never waits for the challenger: the route offers the frame after its verdict is stored and
returns at once. Offering is a non-blocking put into a bounded queue; one background thread with its own ONNX
Runtime session (one intra-op thread, so the champion keeps the other core) scores small batches and writes
them in one transaction per batch. The budget is explicit: a full queue, or a frame that would start scoring
later than `max_delay_ms` after its answer, is skipped and counted, so under load the shadow thins out instead
of falling behind or slowing the champion. Torch-free, as all of serving.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from inspection.preprocessing import PreprocessSpec, TiledFrame
from inspection.storage.shadow_scores import add_shadow_scores
from models.onnx_runtime import OnnxScorer
from serving.frames import frame_to_inputs
from serving.worker_queue import collect_batch

if TYPE_CHECKING:
    from serving.prometheus_metrics import ServingMetrics

log = logging.getLogger("serving")

# Why a frame got no shadow score; the label of the skipped counter.
SKIP_QUEUE_FULL = "queue_full"
SKIP_LATE = "late"
SKIP_STOPPED = "stopped"
SKIP_ERROR = "error"


@dataclass(frozen=True, slots=True)
class _ShadowFrame:
    inspection_id: str
    answered_at: float  # time.monotonic() when the champion's verdict was stored
    # The champion's preprocessed tensor when its preprocessing is the challenger's; else the raw frame, decoded
    # again on the shadow thread (never on the request's).
    payload: np.ndarray | bytes


_STOP = object()  # behind every accepted frame: the worker ends after them (or skips them, past their budget)


class ShadowScorer:
    """One product's challenger in shadow: a bounded queue and one worker thread writing shadow_scores rows."""

    def __init__(
        self,
        scorer: OnnxScorer,
        *,
        product: str,
        model_version: int,
        sessions: sessionmaker[Session],
        queue_size: int = 256,
        max_delay_ms: float = 2000.0,
        max_batch: int = 8,
        max_pixels: int = 50_000_000,
        metrics: ServingMetrics | None = None,
        threshold: float | None = None,
    ):
        """`threshold` is QA's served threshold of the challenger's version, when one was set: the verdicts it
        would give once promoted. Without it, the threshold in the model's metadata."""
        served_threshold = threshold if threshold is not None else scorer.threshold
        if served_threshold is None:
            raise ValueError(f"challenger v{model_version} has no calibrated threshold")
        if queue_size < 1 or max_batch < 1 or max_delay_ms <= 0:
            raise ValueError("queue_size and max_batch must be at least 1 and max_delay_ms positive")
        self.product, self.model_version = product, model_version
        self.threshold_override = threshold
        self._scorer, self._threshold = scorer, float(served_threshold)
        self._sessions, self._metrics = sessions, metrics
        self._queue_size, self._max_delay_s, self._max_batch = queue_size, max_delay_ms / 1000, max_batch
        self._max_pixels = max_pixels
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size + 1)  # +1: room for the stop marker
        # The lock makes "stopped?", "full?" and "enqueue" one step against stop().
        self._accepting, self._stopped = threading.Lock(), False
        self._thread = threading.Thread(target=self._run, name=f"shadow-{product}-v{model_version}", daemon=True)
        self._thread.start()

    @property
    def spec(self) -> PreprocessSpec:
        """The challenger's preprocessing."""
        return self._scorer.spec

    @property
    def queue_depth(self) -> int:
        """Frames waiting for the shadow worker."""
        return self._queue.qsize()

    def offer(self, inspection_id: str, inputs: np.ndarray | TiledFrame, spec: PreprocessSpec, data: bytes) -> bool:
        """Queue an answered frame for the challenger without waiting; False (and counted) when it is skipped.

        `inputs` were preprocessed with `spec` for the champion; they are reused when the challenger's
        preprocessing is the same, else the raw `data` is decoded again on the shadow thread.
        """
        # A tiled frame is cut again on the shadow thread.
        payload = inputs if spec == self.spec and isinstance(inputs, np.ndarray) else data
        frame = _ShadowFrame(inspection_id, time.monotonic(), payload)
        with self._accepting:
            if self._stopped:
                reason = SKIP_STOPPED
            elif self._queue.qsize() >= self._queue_size:  # safe: all puts hold the lock, the worker only takes
                reason = SKIP_QUEUE_FULL
            else:
                self._queue.put_nowait(frame)
                return True
        self._skipped(reason, 1)
        return False

    def stop(self) -> None:
        """Take no more frames; queued ones are still scored within their delay budget, then the worker ends."""
        with self._accepting:
            if not self._stopped:
                self._stopped = True
                self._queue.put_nowait(_STOP)  # into the slot offer() leaves free

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to end after stop(); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _skipped(self, reason: str, count: int) -> None:
        if self._metrics is not None and count:
            self._metrics.observe_shadow_skipped(self.product, reason, count)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            # No waiting for company: the shadow has no latency to trade for batch size, but a backlog batches.
            frames, stopping = collect_batch(self._queue, self._max_batch, _STOP)
            if frames:
                try:
                    self._score(frames)
                except Exception:  # a bad batch (decode, scoring, database) costs its frames, never the worker
                    log.exception(
                        "shadow scoring of %s v%d failed for %d frames", self.product, self.model_version, len(frames)
                    )
                    self._skipped(SKIP_ERROR, len(frames))

    def _inputs(self, frame: _ShadowFrame) -> np.ndarray | TiledFrame:
        if isinstance(frame.payload, bytes):
            return frame_to_inputs(frame.payload, self.spec, self._max_pixels)
        return frame.payload

    def _scores(self, inputs: list[np.ndarray | TiledFrame]) -> tuple[np.ndarray, np.ndarray]:
        """(defect (N,), types (N, K)): one batch of whole frames, or for a tiled challenger each frame's tiles in
        one run, its score their maximum (as the engine serves it)."""
        if not any(isinstance(x, TiledFrame) for x in inputs):
            return self._scorer.score_batch(np.stack(inputs))  # type: ignore[arg-type]
        defects, types = [], []
        for x in inputs:
            tile_defect, tile_types = self._scorer.score_batch(x.inputs if isinstance(x, TiledFrame) else x[None])
            best = int(np.argmax(tile_defect))
            defects.append(float(tile_defect[best]))
            types.append(tile_types[best])
        return np.array(defects), np.stack(types)

    def _score(self, frames: list[_ShadowFrame]) -> None:
        """Score the frames still within their delay budget and store them in one transaction."""
        started = time.monotonic()
        timely = [frame for frame in frames if started - frame.answered_at <= self._max_delay_s]
        self._skipped(SKIP_LATE, len(frames) - len(timely))
        if not timely:
            return
        defect, types = self._scores([self._inputs(frame) for frame in timely])
        done, scored_at = time.monotonic(), datetime.now(UTC)
        names = self._scorer.defect_types
        rows = []
        for frame, probability, type_probabilities in zip(timely, defect.tolist(), types, strict=True):
            flagged = probability >= self._threshold
            best = int(np.argmax(type_probabilities))
            rows.append(
                {
                    "inspection_id": frame.inspection_id,
                    "product": self.product,
                    "model_version": self.model_version,
                    "defect_probability": float(probability),
                    "verdict": "defect" if flagged else "pass",
                    "defect_type": (names[best] if best < len(names) else str(best)) if flagged else None,
                    "threshold": self._threshold,
                    "latency_ms": 1000 * (done - frame.answered_at),
                    "scored_at": scored_at,
                }
            )
        add_shadow_scores(self._sessions, rows)
        if self._metrics is not None:
            self._metrics.observe_shadow_scored(self.product, len(rows))
