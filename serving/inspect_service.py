"""Inspecting one camera frame: read it from the request, score it, archive it when policy says so, store its row,
answer, then tell the rest.

The order is the contract: the row is committed before the verdict is returned ("nothing answered is lost");
metrics, the reject message and the challenger in shadow come after it and never delay or change the answer.
Both ways in (the documented route and the camera's plain-frame route in serving.fast_path) call `answer_frame`, so
reading, checking and answering a frame is written once, here.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from inspection.audit import AuditDraw, draw_for_audit
from inspection.errors import InspectionError
from inspection.storage.inspections import needs_review
from serving.archive import archive_with_map, should_archive
from serving.audit_rates import audit_policy
from serving.engine import InferenceEngine, Verdict
from serving.frames import check_content_type, decodes_quickly, frame_size, frame_to_inputs
from serving.state import ServingState

FRAME_FIELDS = ("camera_id", "line_id", "frame_id", "captured_at")
# The columns' sizes: a longer value is refused with a clear 400 before scoring, rather than failing the
# insert on PostgreSQL (SQLite would silently store it) after the frame was scored.
FIELD_MAX_LENGTHS = {"camera_id": 64, "line_id": 64, "frame_id": 128, "captured_at": 64}


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
    audit: AuditDraw  # drawn for QA's audit or not, and with what probability

    @property
    def label(self) -> str:
        """The verdict as stored and answered: defect or pass."""
        return self.verdict.label


async def read_frame(request: Request, limit: int) -> tuple[bytes, str]:
    """The image bytes and their content type, from a raw body or a multipart 'file' field; 413 past the limit."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart request without a 'file' field")
        data = await upload.read(limit + 1)
        content_type = upload.content_type or ""
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        if size > limit:
            data = data + b"x"  # over the limit: reported below
    if len(data) > limit:
        raise HTTPException(413, f"frame larger than {limit:,} bytes")
    check_content_type(content_type)
    return data, content_type


def frame_fields(request: Request) -> dict[str, str | None]:
    """camera_id, line_id, frame_id and captured_at as sent; 400 for one longer than its column."""
    # Query parameters win; headers (camera_id or X-Camera-Id style) serve cameras that cannot change URLs.
    fields: dict[str, str | None] = {}
    for name in FRAME_FIELDS:
        header = "x-" + name.replace("_", "-")
        value = request.query_params.get(name) or request.headers.get(name) or request.headers.get(header)
        if value is not None and len(value) > FIELD_MAX_LENGTHS[name]:
            raise InspectionError(f"{name} is longer than {FIELD_MAX_LENGTHS[name]} characters")
        fields[name] = value
    return fields


def parse_captured_at(value: str | None) -> datetime | None:
    """The camera's capture time (ISO 8601; without an offset it is UTC), or None when not sent."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InspectionError(f"captured_at {value!r} is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def answer_frame(
    request: Request, state: ServingState, engine: InferenceEngine, product: str, heatmap: bool
) -> JSONResponse:
    """A request's whole work once its key, product and engine are known: read, score, store, answer."""
    started = time.perf_counter()
    fields = frame_fields(request)
    captured_at = parse_captured_at(fields["captured_at"])
    data, content_type = await read_frame(request, state.settings.max_body_bytes)
    frame = FrameSubmission(
        product=product,
        data=data,
        content_type=content_type,
        line_id=fields["line_id"],
        camera_id=fields["camera_id"],
        frame_id=fields["frame_id"],
        captured_at=captured_at,
        want_heatmap=heatmap,
    )
    result = await inspect_submission(state, engine, frame, started)
    verdict = result.verdict
    # A plain dict in a JSONResponse: FastAPI passes a Response through as it is, where returning the model would
    # have it dumped, validated again against response_model and serialized, on every frame. The fields are
    # serving.routes.inspect.InspectResponse's, which documents the answer in OpenAPI; a test pins the two together.
    return JSONResponse(
        {
            "inspection_id": result.inspection_id,
            "product": product,
            "verdict": result.label,
            "defect_probability": verdict.defect_probability,
            "defect_type": verdict.defect_type,
            "threshold": verdict.threshold,
            "model_version": verdict.model_version,
            "latency_ms": round(result.latency_ms, 3),
            "heatmap_url": f"/v1/inspections/{result.inspection_id}/heatmap" if result.has_heatmap else None,
            "audit": result.audit.selected,
        }
    )


async def inspect_submission(
    state: ServingState, engine: InferenceEngine, frame: FrameSubmission, started: float
) -> InspectionResult:
    """Score `frame` on `engine`, archive it per policy, commit its row, then count it, publish a reject and offer
    it to the shadow. `started` is the request's time.perf_counter() at arrival."""
    settings = state.settings
    spec = engine.spec
    size = frame_size(frame.data, settings.max_pixels)
    if decodes_quickly(size):  # a camera frame: on the event loop, cheaper than a trip through the thread pool
        inputs = frame_to_inputs(frame.data, spec, settings.max_pixels, size)
    else:
        inputs = await run_in_threadpool(frame_to_inputs, frame.data, spec, settings.max_pixels, size)
    # The engine hands back a map only where one is stored: flagged frames, and any frame that asked for it.
    verdict = await engine.submit(inputs, want_map=frame.want_heatmap)
    inspection_id, received = str(uuid.uuid4()), datetime.now(UTC)
    # Drawn now, before anyone has seen the frame: the audit's estimates are unbiased only if nothing that is
    # learnt later (QA's label, a complaint) can change which frames are in it.
    audit = draw_for_audit(
        audit_policy(state, frame.product), verdict.is_defect, verdict.defect_probability, verdict.threshold
    )
    row = _row(frame, inspection_id, verdict, received, audit)
    review = needs_review(verdict.is_defect, verdict.defect_probability, verdict.threshold)
    drawn = verdict.anomaly_map

    def archive(row: dict[str, Any]) -> None:
        row["archive_path"], row["anomaly_map_path"] = archive_with_map(
            state.archive, frame.product, inspection_id, received, frame.data, frame.content_type, drawn
        )
        row["latency_ms"] = 1000 * (time.perf_counter() - started)  # the frame is archived: its latency ends here

    # A requested heatmap is stored with its frame, so asking for one archives the frame too; QA labels an audited
    # frame from its image, so it is always archived.
    if drawn is not None or audit.selected or should_archive(inspection_id, review, settings.archive_pass_fraction):
        if state.archive.writes_locally:
            # Archived by the row writer just before it stores the row: a local write costs ~0.3 ms of CPU and no
            # waiting, and the writer's thread spares the request a second trip through the thread pool.
            await state.rows.write(row, prepare=archive)
        else:
            # An object store's PUT waits on the network: in the pool, where such waits overlap.
            await run_in_threadpool(archive, row)
            await state.rows.write(row)  # group commit: the row is stored before the answer, in company
    else:
        row["latency_ms"] = 1000 * (time.perf_counter() - started)
        await state.rows.write(row)
    result = InspectionResult(inspection_id, verdict, row["latency_ms"], row["anomaly_map_path"] is not None, audit)
    if state.metrics is not None:
        state.metrics.observe_verdict(frame.product, verdict)
    if (verdict.is_defect or audit.selected) and state.rejects is not None:
        state.rejects.publish(row)  # non-blocking; a broker outage never fails the answer
    shadow = state.shadows.get(frame.product)
    if shadow is not None and shadow.model_version != verdict.model_version:
        # Non-blocking and after the row is stored: the challenger never delays or changes this answer.
        shadow.offer(inspection_id, inputs, spec, frame.data)
    return result


def _row(
    frame: FrameSubmission, inspection_id: str, verdict: Verdict, received: datetime, audit: AuditDraw
) -> dict[str, Any]:
    """The inspections row of an answered frame (also the reject message's source); the archive locations and the
    latency are filled in once the frame is archived."""
    return dict(
        id=inspection_id,
        product=frame.product,
        line_id=frame.line_id,
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        captured_at=frame.captured_at,
        received_at=received,
        verdict=verdict.label,
        defect_probability=verdict.defect_probability,
        defect_type=verdict.defect_type,
        threshold=verdict.threshold,
        model_version=verdict.model_version,
        latency_ms=None,
        archive_path=None,
        anomaly_map_path=None,
        audit_probability=audit.probability,
        audit_selected=audit.selected,
        audit_stratum=audit.stratum,
    )
