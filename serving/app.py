"""`create_app(settings)`: the FastAPI application, built with no import-time globals so tests build their own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from inspection.audit_estimates import warm_audit_streams
from inspection.settings import Settings
from inspection.storage.database import make_engine, open_database, session_factory
from inspection.storage.minute_counts import prune_minute_counts
from inspection.storage.partitions import ensure_partitions
from inspection.storage.rollups import without_rollups
from serving.archive_check import check_archive_until_ok
from serving.errors import install_error_handlers
from serving.fast_path import PlainFrameRoute
from serving.model_watcher import stop_shadows, sync_engines, watch_champions
from serving.orphan_sweep import sweep_orphans_forever
from serving.prometheus_metrics import RequestMetricsMiddleware, ServingMetrics
from serving.reject_publisher import RejectPublisher
from serving.routes import (
    audit,
    health,
    inspect,
    inspections,
    me,
    metrics,
    operating_curve,
    products,
    shadow,
    stats,
)
from serving.routes.dashboard import install_dashboard
from serving.row_writer import InspectionRowWriter
from serving.state import ServingState

SHADOW_STOP_GRACE_S = 10.0  # beyond the delay budget: one batch still being scored and written


STORAGE_UPKEEP_S = 3600.0


async def keep_storage_tidy(sessions: sessionmaker[Session]) -> None:
    """At start and every hour: PostgreSQL's coming days' `inspections` partitions created
    (inspection.storage.partitions; rows meanwhile land in the default one), and the throughput chart's minute
    counts older than their two days deleted (inspection.storage.minute_counts). A failed try is logged and retried."""
    log = logging.getLogger(__name__)
    while True:
        try:
            await asyncio.to_thread(ensure_partitions, sessions.kw["bind"])
        except Exception:
            log.exception("creating the coming days' partitions failed")
        try:
            await asyncio.to_thread(_prune_minutes, sessions)
        except Exception:
            log.exception("pruning the old minute counts failed")
        await asyncio.sleep(STORAGE_UPKEEP_S)


def _prune_minutes(sessions: sessionmaker[Session]) -> None:
    with sessions.kw["bind"].begin() as connection:
        prune_minute_counts(connection)


def create_app(settings: Settings, *, migrate: bool = True) -> FastAPI:
    """The inspection server for one INSPECTION_HOME; `migrate=False` when the schema was brought up to date
    already (by the parent of several worker processes, so they do not all run Alembic at once)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        sessions = open_database(url) if migrate else session_factory(make_engine(url))
        if not settings.rollup_upkeep:  # the benchmark's baseline only (Settings.rollup_upkeep)
            sessions = without_rollups(sessions)
        state = ServingState(
            settings=settings, sessions=sessions, rows=InspectionRowWriter(sessions), metrics=app.state.metrics
        )
        await sync_engines(state)
        await asyncio.to_thread(warm_audit_streams)  # drawn once here, not by the first chart's request
        if settings.mqtt_url:
            state.rejects = RejectPublisher(settings.mqtt_url, settings.mqtt_topic_prefix, app.state.metrics.registry)
            state.rejects.start()
        app.state.serving = state
        watcher = asyncio.create_task(watch_champions(state, settings.model_poll_seconds))
        archive_checker = asyncio.create_task(check_archive_until_ok(state, settings.model_poll_seconds))
        orphan_sweeper = asyncio.create_task(sweep_orphans_forever(state))
        storage_upkeep = asyncio.create_task(keep_storage_tidy(sessions))
        yield
        storage_upkeep.cancel()
        orphan_sweeper.cancel()
        archive_checker.cancel()
        watcher.cancel()
        with suppress(asyncio.CancelledError):  # a poll cut short must not start a shadow after the stop below
            await watcher
        # Graceful: every queued and in-flight frame is answered before the engines stop.
        for engine in state.engines.values():
            await engine.close()
        # Queued shadow frames within their delay budget are still scored; older ones are skipped and counted, so
        # the budget also bounds how long the shadow can hold up a shutdown.
        await stop_shadows(state, timeout=settings.shadow_max_delay_ms / 1000 + SHADOW_STOP_GRACE_S)
        await state.rows.close()  # uvicorn has finished every request by now: their rows are all handed in
        if state.rejects is not None:  # after the engines: the last answered defects still get their message
            await asyncio.to_thread(state.rejects.stop)

    app = FastAPI(title="Line inspection", version="0.1.0", lifespan=lifespan)
    app.state.auth_cache = {}
    install_error_handlers(app)
    # Engines exist only once the lifespan has run; the queue-depth gauge reads them at scrape time.
    app.state.metrics = ServingMetrics(
        lambda: getattr(getattr(app.state, "serving", None), "engines", {}),
        lambda: getattr(getattr(app.state, "serving", None), "shadows", {}),
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    # Matched before every other route, inside the middleware and exception handlers like any route.
    app.router.routes.insert(0, PlainFrameRoute())
    for module in (inspect, inspections, products, audit, operating_curve, shadow, stats, me, health, metrics):
        app.include_router(module.router)
    install_dashboard(app)
    return app


def create_worker_app() -> FastAPI:
    """The factory each worker process of `inspection serve --workers N` calls: settings from the INSPECTION_*
    environment the parent passed on; the parent ran the migrations before starting the workers."""
    return create_app(Settings(), migrate=False)
