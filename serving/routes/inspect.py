"""POST /v1/inspect/{product}: a camera frame in, a verdict out, and a row for every answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from inspection.errors import InspectionError
from serving import inspect_service
from serving.auth import CameraKey
from serving.deps import EngineDep, ProductDep, ServingStateDep
from serving.engine import InferenceEngine
from serving.frames import check_content_type
from serving.state import ServingState

router = APIRouter(tags=["inspect"])
FRAME_FIELDS = ("camera_id", "line_id", "frame_id", "captured_at")
# The columns' sizes: a longer value is refused with a clear 400 before scoring, rather than failing the
# insert on PostgreSQL (SQLite would silently store it) after the frame was scored.
FIELD_MAX_LENGTHS = {"camera_id": 64, "line_id": 64, "frame_id": 128, "captured_at": 64}


class InspectResponse(BaseModel):
    inspection_id: str
    product: str
    verdict: str
    defect_probability: float
    defect_type: str | None
    threshold: float
    model_version: int
    latency_ms: float
    heatmap_url: str | None = None


async def _read_frame(request: Request, limit: int) -> tuple[bytes, str]:
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


def _frame_fields(request: Request) -> dict[str, str | None]:
    # Query parameters win; headers (camera_id or X-Camera-Id style) serve cameras that cannot change URLs.
    fields: dict[str, str | None] = {}
    for name in FRAME_FIELDS:
        header = "x-" + name.replace("_", "-")
        value = request.query_params.get(name) or request.headers.get(name) or request.headers.get(header)
        if value is not None and len(value) > FIELD_MAX_LENGTHS[name]:
            raise InspectionError(f"{name} is longer than {FIELD_MAX_LENGTHS[name]} characters")
        fields[name] = value
    return fields


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InspectionError(f"captured_at {value!r} is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.post("/v1/inspect/{product}", response_model=InspectResponse)
async def inspect_frame(
    request: Request,
    key: CameraKey,
    product: ProductDep,
    engine: EngineDep,
    state: ServingStateDep,
    heatmap: Annotated[bool, Query(description="Draw where the defect is even on a pass (archives the frame)")] = False,
) -> JSONResponse:
    """Score one frame with the product's champion model; the verdict is stored before it is answered.

    With a challenger in shadow, the frame is then also queued for it; the answer does not wait for it.

    Defect verdicts (and any frame with `heatmap=true`) of a model with an anomaly map get a heatmap: the map is
    stored beside the archived frame, drawn over it when `heatmap_url` is first fetched.

    A camera's plain frame (no multipart, no `heatmap`) is answered by serving.fast_path through the same
    functions, without this route's dependency resolution and middleware; this route documents both.
    """
    return await answer_frame(request, state, engine, product, heatmap)


async def answer_frame(
    request: Request, state: ServingState, engine: InferenceEngine, product: str, heatmap: bool
) -> JSONResponse:
    """The route's work once the key, product and engine are known: read, score, store, answer."""
    started = time.perf_counter()
    fields = _frame_fields(request)
    captured_at = _parse_time(fields["captured_at"])
    data, content_type = await _read_frame(request, state.settings.max_body_bytes)
    frame = inspect_service.FrameSubmission(
        product=product,
        data=data,
        content_type=content_type,
        line_id=fields["line_id"],
        camera_id=fields["camera_id"],
        frame_id=fields["frame_id"],
        captured_at=captured_at,
        want_heatmap=heatmap,
    )
    result = await inspect_service.inspect_frame(state, engine, frame, started)
    verdict = result.verdict
    # A plain dict in a JSONResponse: FastAPI passes a Response through as it is, where returning the model would
    # have it dumped, validated again against response_model and serialized, on every frame. The fields are
    # InspectResponse's, which documents the answer in OpenAPI; a test pins the two together.
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
        }
    )
