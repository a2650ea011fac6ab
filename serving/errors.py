"""Every error leaves as JSON with a 4xx/5xx status; never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inspection.errors import ImageDecodeError, ImageTooLargeError, InspectionError
from inspection.storage.inspections import InspectionNotFound
from models.registry import UnknownModelVersion
from serving.engine import EngineClosed, EngineOverloaded
from serving.frames import UnsupportedMediaType

log = logging.getLogger("serving")
RETRY_AFTER_SECONDS = "1"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors to HTTP statuses; anything unexpected is logged and answered 500 without details."""

    @app.exception_handler(InspectionError)
    async def domain_error(_request: Request, exc: InspectionError) -> JSONResponse:
        if isinstance(exc, UnsupportedMediaType):
            return _error(415, str(exc))
        if isinstance(exc, ImageTooLargeError):
            return _error(413, str(exc))
        if isinstance(exc, ImageDecodeError):
            return _error(400, str(exc))
        if isinstance(exc, InspectionNotFound | UnknownModelVersion):
            return _error(404, str(exc))
        return _error(400, str(exc))

    @app.exception_handler(EngineOverloaded)
    async def overloaded(_request: Request, _exc: EngineOverloaded) -> JSONResponse:
        return _error(503, "inference queue is full; retry shortly", {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(EngineClosed)
    async def closed(_request: Request, _exc: EngineClosed) -> JSONResponse:
        return _error(503, "server is shutting down", {"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error; it has been logged")
