"""The dashboard's HTML pages and static files. The pages carry no data, so they need no key; their scripts call
the /v1 API with the key the user enters."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from inspection.names import validate_product_name

STATIC_DIR = Path(__file__).resolve().parents[1] / "dashboard" / "static"
STATIC_URL = "/static/dashboard"
# Plants often have no internet: the pages may load nothing from outside, and the browser enforces it.
# Images are blob: URLs because <img src> cannot send the API key.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Revalidate on every load (a cheap 304 via ETag) so an upgraded server never runs with yesterday's scripts.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    headers = {**NO_CACHE, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/")
async def dashboard_all() -> FileResponse:
    """The dashboard over all products."""
    return _page("index.html")


@router.get("/products/{product}")
async def dashboard_product(product: str) -> FileResponse:
    """The dashboard scoped to one product (the page reads the name from its URL)."""
    validate_product_name(product)
    return _page("index.html")


@router.get("/review")
async def review() -> FileResponse:
    """The QA review page; `?product=` is read by the page's script."""
    return _page("review.html")


class _RevalidatedStaticFiles(StaticFiles):
    """StaticFiles that asks browsers to revalidate (ETag) instead of guessing how long to cache."""

    def file_response(
        self, full_path: PathLike[str] | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update({**NO_CACHE, "X-Content-Type-Options": "nosniff"})
        return response


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard pages and mount its static files at /static/dashboard."""
    app.include_router(router)
    app.mount(STATIC_URL, _RevalidatedStaticFiles(directory=STATIC_DIR), name="dashboard-static")
