"""The served version's trade-off curve: miss rate against false-detection rate on its frozen test split."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from inspection.errors import InspectionError
from models import registry
from models.operating_curve_view import operating_curve_view
from serving.auth import ReaderKey
from serving.deps import ProductDep, ServingStateDep
from serving.responses import KEYED, errors

router = APIRouter(tags=["products"], responses=errors(400, *KEYED, 404))


@router.get("/v1/products/{product}/operating-curve")
async def get_operating_curve(key: ReaderKey, product: ProductDep, state: ServingStateDep) -> dict[str, Any]:
    """The served version's test-split miss / false-detection curve, its current point and what moving it costs."""
    engine = state.engines.get(product)

    def view() -> dict[str, Any]:
        # What this replica serves (version and threshold), else the champion at its recorded served threshold.
        version = engine.model_version if engine is not None else None
        info = registry.resolve_version(state.settings, product, version)
        return operating_curve_view(info, engine.threshold if engine is not None else None)

    try:
        return await run_in_threadpool(view)
    except InspectionError as exc:
        raise HTTPException(404, str(exc)) from exc
