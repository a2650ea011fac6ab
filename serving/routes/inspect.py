"""POST /v1/inspect/{product}: a camera frame in, a verdict out, and a row for every answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from serving.auth import CameraKey
from serving.deps import EngineDep, ProductDep, ServingStateDep
from serving.inspect_service import answer_frame

router = APIRouter(tags=["inspect"])


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
    audit: bool = Field(
        default=False,
        description="Drawn for QA's audit at answer time: divert the part to the QA station (its label feeds the "
        "live miss and false-detection estimates)",
    )


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

    A camera's plain frame (no multipart, no `heatmap`) is matched first by serving.fast_path's route, which skips
    this route's dependency resolution (not the app's middleware or exception handlers); this route documents both.
    """
    return await answer_frame(request, state, engine, product, heatmap)
