"""The camera's plain frame, answered without FastAPI's per-request machinery.

At saturation on ELPV the event loop's thread spent about a third of its samples outside the route:
uvicorn, a dozen ASGI middleware layers, routing over every route and dependency resolution, on the cores the
model needs.
A plain `POST /v1/inspect/{product}` (raw image body, no `heatmap` query) is therefore answered here
by the same functions the route calls: the camera key check, the product and engine lookups and
`answer_frame`; errors go through the app's own exception handlers and every request is counted in the same
metrics. Anything else (multipart uploads, `heatmap=true`, other methods) is left, untouched, to the full stack,
which also documents this route in OpenAPI. Measured (benchmarks.compare_servers' thread split, three rounds
alternated with the code before): the event loop's thread spent 1.5-1.7 against 1.8-2.4 ms of CPU a frame.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from serving.auth import check_camera_key
from serving.deps import get_engine, get_product
from serving.routes.inspect import answer_frame

if TYPE_CHECKING:
    from serving.metrics import ServingMetrics

INSPECT_ROUTE = "/v1/inspect/{product}"  # the route template, as the metrics label it
_INSPECT_PATH = re.compile(r"/v1/inspect/([^/]+)")


def inspect_product(scope: Scope) -> str | None:
    """The product of a request the fast path answers, or None for one the full stack must."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    matched = _INSPECT_PATH.fullmatch(scope["path"])
    if matched is None or b"heatmap" in scope["query_string"]:
        return None
    for name, value in scope["headers"]:
        if name == b"content-type" and value.startswith(b"multipart/"):
            return None
    return matched.group(1)


async def answer_inspect(app: FastAPI, product: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one plain frame as the route would, errors and metrics included."""
    started = time.perf_counter()
    request = Request(scope, receive)
    status = 500
    try:
        try:
            await check_camera_key(request, request.headers.get("x-api-key"))
            state = app.state.serving
            engine = await get_engine(await get_product(product), state)
            response: Response = await answer_frame(request, state, engine, product, heatmap=False)
        except Exception as error:  # answered by the app's handler for it, as the full stack would
            response = await _handled(app, request, error)
        status = response.status_code
        await response(scope, receive, send)
    finally:
        metrics: ServingMetrics = app.state.metrics
        metrics.observe_request("POST", INSPECT_ROUTE, status, time.perf_counter() - started)


async def _handled(app: FastAPI, request: Request, error: Exception) -> Response:
    """The response of the app's exception handler for `error` (the nearest class in its MRO, as Starlette looks
    them up); FastAPI's HTTPException handler and the app's catch-all for Exception are among them."""
    for kind in type(error).__mro__:
        handler = app.exception_handlers.get(kind)
        if handler is not None:
            response = handler(request, error)
            if inspect.isawaitable(response):  # the app's handlers are coroutines; Starlette allows plain functions
                response = await response
            assert isinstance(response, Response)
            return response
    raise error
