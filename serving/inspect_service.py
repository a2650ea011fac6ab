"""Inspecting one camera frame: score it, archive it when policy says so, store its row, then tell the rest.

The order is the contract: the row is committed before the verdict is returned ("nothing answered is lost");
metrics, the reject message and the challenger in shadow come after it and never delay or change the answer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from inspection.storage.inspections import needs_review
from serving.archive import archive_with_map, should_archive
from serving.engine import InferenceEngine, Verdict
from serving.frames import frame_to_inputs
from serving.state import ServingState


@dataclass(frozen=True, slots=True)
class FrameSubmission:
    """A camera frame as received: its bytes and where it came from, already checked by the HTTP layer."""

    product: str
    data: bytes
    content_type: str
    line_id: str | None = None
    camera_id: str | None = None
    frame_id: str | None = None
    captured_at: datetime | None = None
    want_heatmap: bool = False  # store the anomaly map even on a pass (archives the frame)


@dataclass(frozen=True, slots=True)
class InspectionResult:
    """What the line is answered: the stored inspection's id, the verdict, and the server-side latency."""

    inspection_id: str
    verdict: Verdict
    latency_ms: float  # from the request's arrival to the archived frame; the stored row's latency
    has_heatmap: bool  # an anomaly map was stored beside the archived frame

    @property
    def label(self) -> str:
        """The verdict as stored and answered: defect or pass."""
        return "defect" if self.verdict.is_defect else "pass"


async def inspect_frame(
    state: ServingState, engine: InferenceEngine, frame: FrameSubmission, started: float
) -> InspectionResult:
    """Score `frame` on `engine`, archive it per policy, commit its row, then count it, publish a reject and offer
    it to the shadow. `started` is the request's time.perf_counter() at arrival."""
    settings = state.settings
    spec = engine.spec
    inputs = await run_in_threadpool(frame_to_inputs, frame.data, spec, settings.max_pixels)
    verdict = await engine.submit(inputs)
    inspection_id, received = str(uuid.uuid4()), datetime.now(UTC)
    archive_path: str | None = None
    map_path: str | None = None
    review = needs_review(verdict.is_defect, verdict.defect_probability, verdict.threshold)
    drawn = (
        verdict.anomaly_map if verdict.anomaly_map is not None and (verdict.is_defect or frame.want_heatmap) else None
    )
    # A requested heatmap is stored with its frame, so asking for one archives the frame too.
    if drawn is not None or should_archive(inspection_id, review, settings.archive_pass_fraction):
        archive_path, map_path = await run_in_threadpool(
            archive_with_map,
            state.archive,
            frame.product,
            inspection_id,
            received,
            frame.data,
            frame.content_type,
            drawn,
        )
    result = InspectionResult(inspection_id, verdict, 1000 * (time.perf_counter() - started), map_path is not None)
    row = _row(frame, result, received, archive_path, map_path)
    await state.rows.write(row)  # group commit: the row is stored before the answer, in company
    if state.metrics is not None:
        state.metrics.observe_verdict(frame.product, verdict)
    if verdict.is_defect and state.rejects is not None:
        state.rejects.publish(row)  # non-blocking; a broker outage never fails the answer
    shadow = state.shadows.get(frame.product)
    if shadow is not None and shadow.model_version != verdict.model_version:
        # Non-blocking and after the row is stored: the challenger never delays or changes this answer.
        shadow.offer(inspection_id, inputs, spec, frame.data)
    return result


def _row(
    frame: FrameSubmission,
    result: InspectionResult,
    received: datetime,
    archive_path: str | None,
    map_path: str | None,
) -> dict[str, Any]:
    """The inspections row of an answered frame (also the reject message's source)."""
    verdict = result.verdict
    return dict(
        id=result.inspection_id,
        product=frame.product,
        line_id=frame.line_id,
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        captured_at=frame.captured_at,
        received_at=received,
        verdict=result.label,
        defect_probability=verdict.defect_probability,
        defect_type=verdict.defect_type,
        threshold=verdict.threshold,
        model_version=verdict.model_version,
        latency_ms=result.latency_ms,
        archive_path=archive_path,
        anomaly_map_path=map_path,
    )
