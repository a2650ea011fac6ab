"""GET /v1/products/{product}/shadow: the challenger in shadow against the served champion, on live frames."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from inspection.storage.shadow_scores import ShadowComparison, shadow_comparison
from models import registry
from serving.auth import ReaderKey
from serving.deps import ProductDep, ServingStateDep
from serving.responses import KEYED, errors
from serving.state import ServingState
from serving.validation import VersionQuery

router = APIRouter(tags=["products"], responses=errors(400, *KEYED, 404))


def _comparison(state: ServingState, product: str, version: int | None, champion: int | None) -> dict[str, Any]:
    versions = {info.version: info for info in registry.list_versions(state.settings, product)}
    if not versions:
        raise HTTPException(404, f"product {product!r} has no registered model")
    if version is None:
        # This replica's shadow first (what is being scored now), else the registry's alias (not exported yet,
        # or this replica has not polled since it moved).
        shadow = state.shadows.get(product)
        found = registry.challenger(state.settings, product) if shadow is None else None
        version = shadow.model_version if shadow is not None else (found.version if found is not None else None)
    elif version not in versions:
        raise HTTPException(404, f"product {product!r} has no model version {version}")
    if version is None:
        result = ShadowComparison(product, None).to_dict()
    else:
        result = shadow_comparison(state.sessions, product, version, champion_version=champion).to_dict()
    shadow, engine = state.shadows.get(product), state.engines.get(product)
    return {
        **result,
        "in_shadow_now": shadow is not None and shadow.model_version == version,
        "served_version": engine.model_version if engine is not None else None,
    }


@router.get("/v1/products/{product}/shadow")
async def get_shadow(
    _key: ReaderKey,
    product: ProductDep,
    state: ServingStateDep,
    version: Annotated[VersionQuery, Query(description="Challenger version; default the current challenger")] = None,
    champion: Annotated[VersionQuery, Query(description="Only frames this champion version answered")] = None,
) -> dict[str, Any]:
    """Agreement of the challenger in shadow with the served verdicts, and both models' QA-measured rates."""
    return await run_in_threadpool(_comparison, state, product, version, champion)
