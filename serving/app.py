"""`create_app(settings)`: the FastAPI application, built with no import-time globals so tests build their own."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inspection.settings import Settings
from inspection.storage.database import open_database
from models.onnx_runtime import OnnxScorer
from serving.engine import InferenceEngine
from serving.errors import install_error_handlers
from serving.model_store import champion_model, registered_products
from serving.routes import health, inspect, inspections
from serving.state import ServingState

log = logging.getLogger("serving")


def load_engines(settings: Settings) -> dict[str, InferenceEngine]:
    """One engine per product whose champion has been exported; products without one are logged, not fatal."""
    engines = {}
    for product in registered_products(settings):
        served = champion_model(settings, product)
        if served is None:
            log.warning("product %s has no exported champion; run `inspection export %s`", product, product)
            continue
        engines[product] = InferenceEngine(
            OnnxScorer(served.path),
            max_batch=settings.batch_max,
            max_wait_ms=settings.batch_wait_ms,
            queue_size=settings.queue_size,
            model_version=served.version,
        )
    return engines


def create_app(settings: Settings) -> FastAPI:
    """The inspection server for one INSPECTION_HOME."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(settings=settings, sessions=open_database(settings.resolved_database_url))
        state.engines = load_engines(settings)
        app.state.serving = state
        yield
        # Graceful: every queued and in-flight frame is answered before the engines stop.
        for engine in state.engines.values():
            await engine.close()

    app = FastAPI(title="Line inspection", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    for module in (inspect, inspections, health):
        app.include_router(module.router)
    return app
