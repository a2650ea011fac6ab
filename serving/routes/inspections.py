"""QA feedback on an inspection, and the filtered, paginated list of inspections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from inspection.archive_paths import archived_media_type
from inspection.names import LABEL_INPUT_PATTERN, check_known_label, validate_label
from inspection.storage.inspections import (
    TOTAL_CAP,
    InspectionFilter,
    audit_progress,
    get_inspection,
    list_inspection_page,
    record_feedback,
)
from inspection.storage.schema import Inspection
from serving.auth import QaKey
from serving.deps import ServingStateDep, SessionsDep
from serving.heatmaps import rendered_heatmap
from serving.responses import KEYED, errors
from serving.validation import InspectionIdPath, NameQuery, OffsetQuery, ProductQuery, TimeParam, time_query

router = APIRouter(tags=["inspections"], responses=errors(400, *KEYED, 404))


class Feedback(BaseModel):
    # The pattern is documented, and checked by validate_label (a 400 that says what a label may be).
    label: str = Field(description='"good" or the true defect type', json_schema_extra={"pattern": LABEL_INPUT_PATTERN})
    new_type: bool = Field(
        default=False, description="The label is a defect type the product's model does not know yet (on purpose)"
    )


class InspectionOut(BaseModel):
    id: str
    product: str
    line_id: str | None
    camera_id: str | None
    frame_id: str | None
    captured_at: datetime | None
    received_at: datetime
    verdict: str
    defect_probability: float
    defect_type: str | None
    threshold: float
    model_version: int
    latency_ms: float
    archive_path: str | None
    feedback_label: str | None
    feedback_at: datetime | None
    audit_selected: bool = Field(default=False, description="Drawn for QA's audit when it was answered")
    audit_probability: float | None = Field(
        default=None, description="The probability it had of being drawn (None: answered before audit sampling)"
    )
    audit_stratum: str | None = Field(default=None, description="The audit design's stratum it was drawn in")
    image_url: str | None = Field(default=None, description="The archived frame, when it was archived")
    heatmap_url: str | None = Field(default=None, description="Where the defect is, when the model gives a map")

    model_config = {"from_attributes": True}

    @classmethod
    def from_row(cls, row: Inspection) -> InspectionOut:
        out = cls.model_validate(row)
        if row.archive_path:
            out.image_url = f"/v1/inspections/{row.id}/image"
        if row.anomaly_map_path:
            out.heatmap_url = f"/v1/inspections/{row.id}/heatmap"
        return out


class AuditQueueProgress(BaseModel):
    n_selected: int = Field(description="Frames drawn for the audit among the filtered ones")
    n_audited: int = Field(description="Of those, labelled by QA")
    backlog: int = Field(description="Drawn and not yet labelled: the audit queue's length")
    share_done: float | None = Field(description="n_audited / n_selected")


class InspectionPage(BaseModel):
    total: int = Field(description=f"Matching inspections, counted up to {TOTAL_CAP:,}")
    total_capped: bool = Field(
        default=False, description=f"True when more than {TOTAL_CAP:,} match: `total` is then a lower bound"
    )
    limit: int
    offset: int
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page (None on the last page)"
    )
    items: list[InspectionOut]
    audit: AuditQueueProgress | None = Field(default=None, description="With audit=true: the audit's progress")


@router.post("/v1/inspections/{inspection_id}/feedback", response_model=InspectionOut)
async def give_feedback(
    inspection_id: InspectionIdPath, feedback: Feedback, key: QaKey, state: ServingStateDep
) -> InspectionOut:
    """Record QA's ground truth for an inspection ("good" or a defect type); a later call corrects it.

    A defect type the product's served model does not know is refused unless `new_type` says it is meant."""
    sessions = state.sessions
    label = validate_label(feedback.label.strip().lower())
    found = await run_in_threadpool(get_inspection, sessions, inspection_id)
    engine = state.engines.get(found.product)
    check_known_label(label, None if engine is None else engine.defect_types, new_type=feedback.new_type)
    row = await run_in_threadpool(record_feedback, sessions, inspection_id, label, key.name)
    return InspectionOut.from_row(row)


@router.get("/v1/inspections", response_model=InspectionPage)
async def list_all(
    key: QaKey,
    sessions: SessionsDep,
    product: ProductQuery = None,
    line_id: NameQuery = None,
    camera_id: NameQuery = None,
    verdict: Annotated[str | None, Query(pattern="^(pass|defect)$")] = None,
    since: Annotated[TimeParam, time_query("Received at or after (ISO 8601; without an offset it is UTC)")] = None,
    until: Annotated[TimeParam, time_query("Received before (ISO 8601; without an offset it is UTC)")] = None,
    has_feedback: bool | None = None,
    review: Annotated[bool, Query(description="Only defects and low-confidence passes: worth a look")] = False,
    audit: Annotated[
        bool, Query(description="QA's audit queue: frames drawn for the audit, not yet labelled, oldest first")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: OffsetQuery = 0,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="A page's `next_cursor`: the next page at the same cost however deep"),
    ] = None,
) -> InspectionPage:
    """Inspections newest first (the audit queue oldest first), filtered by product, line, camera, verdict, time
    window, QA feedback, review or audit."""
    where = InspectionFilter(product, line_id, camera_id, verdict, since, until, has_feedback, review, audit)
    page = await run_in_threadpool(list_inspection_page, sessions, where, limit, offset, cursor)
    progress = None
    if audit:
        done = await run_in_threadpool(audit_progress, sessions, where)
        progress = AuditQueueProgress(
            n_selected=done.n_selected, n_audited=done.n_audited, backlog=done.backlog, share_done=done.share_done
        )
    return InspectionPage(
        total=page.total,
        total_capped=page.total_capped,
        limit=limit,
        offset=offset,
        next_cursor=page.next_cursor,
        items=[InspectionOut.from_row(r) for r in page.rows],
        audit=progress,
    )


@router.get("/v1/inspections/{inspection_id}/image", response_class=Response)
async def archived_image(inspection_id: InspectionIdPath, _key: QaKey, state: ServingStateDep) -> Response:
    """The archived frame of an inspection (defects, low-confidence passes and a sample of the other passes)."""
    row = await run_in_threadpool(get_inspection, state.sessions, inspection_id)
    data = await run_in_threadpool(state.archive.read, row.archive_path)
    if data is None or row.archive_path is None:
        raise HTTPException(404, f"inspection {inspection_id} has no archived frame")
    return Response(data, media_type=archived_media_type(row.archive_path))


@router.get("/v1/inspections/{inspection_id}/heatmap", response_class=Response)
async def heatmap_image(inspection_id: InspectionIdPath, _key: QaKey, state: ServingStateDep) -> Response:
    """Where the model saw the defect, drawn over the archived frame (PNG; defects, and frames sent with
    `heatmap=true`, of models with an anomaly map)."""
    row = await run_in_threadpool(get_inspection, state.sessions, inspection_id)
    png = None
    if row.archive_path and row.anomaly_map_path:
        png = await run_in_threadpool(
            rendered_heatmap, state.archive, row.archive_path, row.anomaly_map_path, state.settings.max_pixels
        )
    if png is None:
        raise HTTPException(404, f"inspection {inspection_id} has no heatmap")
    return Response(png, media_type="image/png")
