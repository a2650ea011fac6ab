"""A product's audit rates: what share of passes and defect verdicts is drawn for QA, who set it and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from inspection.audit import MAX_BANDS, PassBand
from inspection.audit_change import change_audit_rates
from inspection.storage.audit_settings import MAX_REASON_CHARS, audit_history, audit_setting_in_force
from models.registry import registered_products
from serving.auth import QaKey, ReaderKey
from serving.deps import ProductDep, ServingStateDep
from serving.responses import KEYED, errors

router = APIRouter(tags=["audit"], responses=errors(400, *KEYED, 404))


class AuditChange(BaseModel):
    """New audit rates; a field left out keeps the rate in force. Checked as a whole: nothing is recorded when
    any part is impossible."""

    pass_rate: float | None = Field(
        default=None, ge=0, le=1, description="Probability a pass is drawn for the audit, in [0, 1]"
    )
    defect_rate: float | None = Field(
        default=None, ge=0, le=1, description="Probability a defect verdict is drawn, in [0, 1]"
    )
    pass_bands: list[PassBand] | None = Field(
        default=None,
        max_length=MAX_BANDS,
        description="Optional [{lo, hi, rate}] over a pass's score / threshold, contiguous and covering [0, 1] "
        "(e.g. audit passes near the threshold more); replaces pass_rate for passes",
    )
    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_CHARS,
        pattern=r"\S",
        description="Why the rates change; recorded with who changed them",
    )


async def _known(state: ServingStateDep, product: str) -> None:
    if product not in state.engines and product not in await run_in_threadpool(registered_products, state.settings):
        raise HTTPException(404, f"no registered product {product!r}")


@router.get("/v1/products/{product}/audit")
async def get_audit(product: ProductDep, _key: ReaderKey, state: ServingStateDep) -> dict[str, Any]:
    """The audit rates in force for a product (QA's newest setting, else its config) and QA's past settings."""
    await _known(state, product)
    setting = await run_in_threadpool(audit_setting_in_force, state.sessions, state.settings.configs_dir, product)
    history = await run_in_threadpool(audit_history, state.sessions, product)
    return {"product": product, "in_force": setting.as_json(), "history": [h.as_json() for h in history]}


@router.put("/v1/products/{product}/audit")
async def set_audit(
    product: ProductDep, change: Annotated[AuditChange, Body()], key: QaKey, state: ServingStateDep
) -> dict[str, Any]:
    """Set a product's audit rates (QA); this replica draws at them at once, the others from their next poll."""
    await _known(state, product)
    changes = change.model_dump(exclude={"reason"}, exclude_unset=True)  # bands as dicts: validated as a whole
    setting = await run_in_threadpool(
        change_audit_rates,
        state.sessions,
        state.settings.configs_dir,
        product,
        changes,
        by=key.name,
        reason=change.reason,
    )
    state.audit_policies[product] = setting.policy
    return {"product": product, "in_force": setting.as_json()}
