"""The camera's plain frame, answered without FastAPI's dependency resolution: a route matched before all others.

At saturation on ELPV the event loop's thread spent about a third of its samples outside the route, most of it in
routing over every route and resolving the route's dependencies and parameters, on the cores the model needs. A
plain `POST /v1/inspect/{product}` (raw image body, no `heatmap` query) is therefore matched first by
`PlainFrameRoute`, which calls the same functions the documented route's dependencies call (the camera key check,
the product and engine lookups) and then serving.inspect_service.answer_frame, as that route does.

It is a route inside the app's router, not a wrapper around the app: every middleware (the request metrics, any
added later) and every exception handler applies to it exactly as to the documented route. Anything else (multipart
uploads, `heatmap=true`, other methods) is left to the documented route, which also describes this one in OpenAPI.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from serving.auth import check_camera_key
from serving.deps import get_engine, get_product
from serving.inspect_service import answer_frame

INSPECT_ROUTE = "/v1/inspect/{product}"  # the route template, as the metrics label it
_INSPECT_PATH = re.compile(r"/v1/inspect/([^/]+)")


def inspect_product(scope: Scope) -> str | None:
    """The product of a request the fast path answers, or None for one the documented route must."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    matched = _INSPECT_PATH.fullmatch(scope["path"])
    if matched is None or b"heatmap" in scope["query_string"]:
        return None
    for name, value in scope["headers"]:
        if name == b"content-type" and value.startswith(b"multipart/"):
            return None
    return matched.group(1)


class PlainFrameRoute(BaseRoute):
    """Matches a camera's plain frame post before any other route and answers it as the documented route would."""

    path = path_format = INSPECT_ROUTE  # what the request metrics and FastAPI's route telemetry label it with

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """FULL for a plain frame post once the app serves (before its lifespan ran, the documented route answers)."""
        product = inspect_product(scope)
        app = scope.get("app")
        if product is None or app is None or not hasattr(app.state, "serving"):
            return Match.NONE, {}
        return Match.FULL, {"route": self, "endpoint": self.handle, "path_params": {"product": product}}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the key, the product and its engine, then answer; errors propagate to the app's handlers."""
        request = Request(scope, receive)
        await check_camera_key(request, request.headers.get("x-api-key"))
        state = request.app.state.serving
        engine = await get_engine(await get_product(scope["path_params"]["product"]), state)
        response = await answer_frame(request, state, engine, scope["path_params"]["product"], heatmap=False)
        await response(scope, receive, send)
