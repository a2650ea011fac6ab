"""`create_app(settings)`: the FastAPI application, built with no import-time globals so tests build their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from inspection.settings import Settings
from inspection.storage.database import open_database
from serving.errors import install_error_handlers
from serving.metrics import RequestMetricsMiddleware, ServingMetrics
from serving.model_watcher import sync_engines, watch_champions
from serving.reject_publisher import RejectPublisher
from serving.routes import health, inspect, inspections, me, metrics, products, stats
from serving.routes.dashboard import install_dashboard
from serving.state import ServingState


def create_app(settings: Settings) -> FastAPI:
    """The inspection server for one INSPECTION_HOME."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(settings=settings, sessions=open_database(settings.resolved_database_url))
        await sync_engines(state)
        if settings.mqtt_url:
            state.rejects = RejectPublisher(settings.mqtt_url, settings.mqtt_topic_prefix, app.state.metrics.registry)
            state.rejects.start()
        app.state.serving = state
        watcher = asyncio.create_task(watch_champions(state, settings.model_poll_seconds))
        yield
        watcher.cancel()
        # Graceful: every queued and in-flight frame is answered before the engines stop.
        for engine in state.engines.values():
            await engine.close()
        if state.rejects is not None:  # after the engines: the last answered defects still get their message
            await asyncio.to_thread(state.rejects.stop)

    app = FastAPI(title="Line inspection", version="0.1.0", lifespan=lifespan)
    app.state.auth_cache = {}
    install_error_handlers(app)
    # Engines exist only once the lifespan has run; the queue-depth gauge reads them at scrape time.
    app.state.metrics = ServingMetrics(lambda: getattr(getattr(app.state, "serving", None), "engines", {}))
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    for module in (inspect, inspections, products, stats, me, health, metrics):
        app.include_router(module.router)
    install_dashboard(app)
    return app
