"""Typed FastAPI dependencies: what a route needs from the running app, declared as `Annotated` parameters.

All are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, one hop per request,
which the inspect route, answered at line speed, must not pay for a dictionary lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from inspection.names import PRODUCT_PATTERN, validate_product_name
from inspection.settings import Settings
from serving.engine import InferenceEngine
from serving.prometheus_metrics import ServingMetrics
from serving.state import ServingState


async def get_serving_state(request: Request) -> ServingState:
    """The running server's state, set by the app's lifespan."""
    state: ServingState = request.app.state.serving
    return state


ServingStateDep = Annotated[ServingState, Depends(get_serving_state)]


async def get_settings(state: ServingStateDep) -> Settings:
    """The settings the server was built with."""
    return state.settings


async def get_sessions(state: ServingStateDep) -> sessionmaker[Session]:
    """The database session factory."""
    return state.sessions


async def get_metrics(request: Request) -> ServingMetrics:
    """The app's Prometheus metrics (they exist before the lifespan runs, so they live beside the state)."""
    metrics: ServingMetrics = request.app.state.metrics
    return metrics


async def get_product(
    product: Annotated[str, Path(description="Product name", json_schema_extra={"pattern": PRODUCT_PATTERN})],
) -> str:
    """The `product` path parameter, checked to be a valid product name (400 otherwise: the same answer on the
    camera's fast path, which calls this directly; the schema states the pattern)."""
    return validate_product_name(product)


ProductDep = Annotated[str, Depends(get_product)]


async def get_engine(product: ProductDep, state: ServingStateDep) -> InferenceEngine:
    """The inference engine serving the `product` path parameter; 404 when it has none, 503 (with the reason) when
    its champion could not be loaded."""
    engine = state.engines.get(product)
    if engine is None:
        failed = state.unloadable.get(product)
        if failed is not None:
            reason = f"the champion of {product!r} (v{failed.version}) could not be loaded: {failed.error}"
            raise HTTPException(503, reason)
        raise HTTPException(404, f"no served model for product {product!r}")
    return engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
