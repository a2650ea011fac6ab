"""Products and their model versions; gated promotion that this replica applies at once (others on their poll)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from models import registry
from models.load_check import UnloadableModelError
from models.promotion import PromotionRefused, promote
from models.registry import registered_products
from models.serving_choice import current_threshold, read_served_scores, serving_file
from serving.auth import QaKey, ReaderKey
from serving.deps import ProductDep, ServingStateDep, SettingsDep
from serving.model_watcher import sync_engines
from serving.responses import KEYED, errors
from serving.validation import VersionPath

router = APIRouter(tags=["products"], responses=errors(400, *KEYED, 404))


class PromoteRequest(BaseModel):
    force: bool = False
    reason: str | None = None


@router.get("/v1/products")
async def list_products(key: ReaderKey, state: ServingStateDep) -> list[dict[str, Any]]:
    """Registered products with the model version this replica serves, its defect types and threshold."""
    engines = state.engines
    products = await run_in_threadpool(registered_products, state.settings)
    return [
        {
            "product": p,
            "served_version": engines[p].model_version if p in engines else None,
            "defect_types": engines[p].defect_types if p in engines else [],
            "threshold": engines[p].threshold if p in engines else None,
        }
        for p in products
    ]


@router.get("/v1/products/{product}/models")
async def list_models(key: ReaderKey, product: ProductDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """Versions with aliases, whether they are exported, their frozen-test miss and false-detection rates at
    training's calibration, and (`test_at_served_threshold`) at the threshold each serves now."""

    def describe() -> list[dict[str, Any]]:
        rows = []
        for info in registry.list_versions(settings, product):
            test = (registry.read_report(info) or {}).get("test", {})
            # QA may have moved the served threshold since training: the test point there, from the recorded scores.
            scores = read_served_scores(info)
            served = current_threshold(info, scores)
            rows.append(
                {
                    "version": info.version,
                    "aliases": list(info.aliases),
                    "exported": serving_file(info.artifacts) is not None,
                    **{k: test.get(k) for k in ("n_good", "n_defect", "miss_rate", "miss_rate_ci95")},
                    **{k: test.get(k) for k in ("false_detection_rate", "false_detection_rate_ci95")},
                    "served_threshold": None if served is None else served.value,
                    "served_threshold_source": None if served is None else served.source,
                    "test_at_served_threshold": (
                        None if scores is None or served is None else scores.test.point(served.value)
                    ),
                }
            )
        return rows

    rows = await run_in_threadpool(describe)
    if not rows:
        raise HTTPException(404, f"product {product!r} has no registered model")
    return rows


@router.post("/v1/products/{product}/models/{version}/promote", responses=errors(409))
async def promote_version(
    key: QaKey, product: ProductDep, version: VersionPath, state: ServingStateDep, body: PromoteRequest | None = None
) -> dict[str, Any]:
    """Promote a version to champion through the registry's gate; refused promotions answer 409."""
    body = body or PromoteRequest()
    info = await run_in_threadpool(registry.resolve_version, state.settings, product, version)
    if serving_file(info.artifacts) is None:
        raise HTTPException(
            409, f"version {version} has not been exported; run `inspection export {product} --version {version}`"
        )
    try:
        result = await run_in_threadpool(
            lambda: promote(state.settings, product, version, force=body.force, reason=body.reason)
        )
    except (PromotionRefused, UnloadableModelError) as exc:
        raise HTTPException(409, str(exc)) from exc
    await sync_engines(state)
    return {
        "product": product,
        "old_version": result.old_version,
        "new_version": result.new_version,
        "forced": result.forced,
        "changed": result.changed,
        "comparison": result.comparison,
        "promoted_by": key.name,
    }
