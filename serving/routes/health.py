"""Liveness and readiness."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from serving.deps import ServingStateDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready: the same object, with the reasons"}})
async def readyz(state: ServingStateDep) -> JSONResponse:
    """Ready when at least one model is loaded and the database answers; 503 with the reasons otherwise.
    `archive` is "ok" or why frames cannot be archived (it does not change readiness: serving.archive_check).
    `worker` is this process's id: under `inspection serve --workers N` it says which worker answered."""

    def database_ok() -> bool:
        try:
            with state.sessions() as session:
                session.execute(text("select 1"))
            return True
        except Exception:
            return False

    database = await run_in_threadpool(database_ok)
    models = {product: engine.model_version for product, engine in state.engines.items()}
    ready = database and bool(models)
    # A champion that failed to load does not make the replica unready: every replica reads the same registry, so
    # taking them all out of the balancer would stop the products that do work too.
    unloadable = {product: f"v{failed.version}: {failed.error}" for product, failed in state.unloadable.items()}
    answer = {
        "ready": ready,
        "database": database,
        "models": models,
        "unloadable": unloadable,
        "archive": state.archive_status,
        "worker": os.getpid(),
    }
    return JSONResponse(answer, status_code=200 if ready else 503)
