"""QA feedback on an inspection, and the filtered, paginated list of inspections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from inspection.names import validate_label
from inspection.storage.inspections import InspectionFilter, get_inspection, list_inspections, record_feedback
from serving.auth import QaKey

router = APIRouter(tags=["inspections"])


class Feedback(BaseModel):
    label: str = Field(description='"good" or the true defect type')


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

    model_config = {"from_attributes": True}


class InspectionPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[InspectionOut]


@router.post("/v1/inspections/{inspection_id}/feedback", response_model=InspectionOut)
async def give_feedback(inspection_id: str, feedback: Feedback, request: Request, key: QaKey) -> InspectionOut:
    """Record QA's ground truth for an inspection ("good" or a defect type); a later call corrects it."""
    label = validate_label(feedback.label.strip().lower())
    sessions = request.app.state.serving.sessions
    await run_in_threadpool(get_inspection, sessions, inspection_id)
    row = await run_in_threadpool(record_feedback, sessions, inspection_id, label, key.name)
    return InspectionOut.model_validate(row)


@router.get("/v1/inspections", response_model=InspectionPage)
async def list_all(
    request: Request,
    key: QaKey,
    product: str | None = None,
    line_id: str | None = None,
    camera_id: str | None = None,
    verdict: Annotated[str | None, Query(pattern="^(pass|defect)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    has_feedback: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> InspectionPage:
    """Inspections newest first, filtered by product, line, camera, verdict, time window and QA feedback."""
    where = InspectionFilter(product, line_id, camera_id, verdict, since, until, has_feedback)
    rows, total = await run_in_threadpool(list_inspections, request.app.state.serving.sessions, where, limit, offset)
    return InspectionPage(
        total=total, limit=limit, offset=offset, items=[InspectionOut.model_validate(r) for r in rows]
    )
