"""The camera's plain frame skips FastAPI's dependency resolution (serving.fast_path): it must answer exactly as the
route does, errors included, pass through every middleware and exception handler of the app, and leave every other
request to the documented route."""

from __future__ import annotations

import threading

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inspection.errors import ImageDecodeError
from serving.app import create_app
from serving.fast_path import PlainFrameRoute, inspect_product
from tests.conftest import free_port, wait_until_started
from tests.serving.test_server import _frame, _png_bomb, _stored

pytestmark = pytest.mark.slow


def _scope(
    method: str = "POST", path: str = "/v1/inspect/widget", query: bytes = b"", content_type: bytes = b"image/png"
):
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(b"content-type", content_type)],
    }


def test_only_plain_frame_posts_take_the_fast_path() -> None:
    assert inspect_product(_scope()) == "widget"
    assert inspect_product(_scope(query=b"line_id=l1&camera_id=c2")) == "widget"
    assert inspect_product(_scope(method="GET")) is None
    assert inspect_product(_scope(path="/v1/inspect/widget/extra")) is None
    assert inspect_product(_scope(path="/v1/inspections")) is None
    assert inspect_product(_scope(query=b"heatmap=true")) is None  # pydantic's boolean parsing stays with the route
    assert inspect_product(_scope(content_type=b"multipart/form-data; boundary=x")) is None
    assert inspect_product({"type": "websocket", "path": "/v1/inspect/widget"}) is None


CASES = [
    ("a frame", {}, _frame(5), "image/png", {}),
    ("no key", {"X-API-Key": ""}, _frame(), "image/png", {}),
    ("a wrong key", {"X-API-Key": "insp_not-a-real-key"}, _frame(), "image/png", {}),
    ("a manager's key", "manager", _frame(), "image/png", {}),
    ("an unknown product", {}, _frame(), "image/png", {"product": "no-such-product"}),
    ("a bad product name", {}, _frame(), "image/png", {"product": "Bad..Name"}),
    ("a wrong content type", {}, b"hello", "text/plain", {}),
    ("a corrupt frame", {}, cv2.imencode(".jpg", np.full((64, 64), 90, np.uint8))[1].tobytes()[:200], "image/jpeg", {}),
    ("a pixel bomb", {}, _png_bomb(), "image/png", {}),
    ("an overlong field", {}, _frame(), "image/png", {"frame_id": "f" * 129}),
    ("a bad capture time", {}, _frame(), "image/png", {"captured_at": "yesterday"}),
]


@pytest.mark.parametrize(("name", "who", "body", "content_type", "extra"), CASES, ids=[case[0] for case in CASES])
def test_the_fast_path_answers_as_the_route_does(live_server, name, who, body, content_type, extra) -> None:
    product = extra.get("product", live_server.product)
    params = {key: value for key, value in extra.items() if key != "product"}
    role = who if isinstance(who, str) else "camera"
    answers = {}
    with live_server.client(role) as client:
        for path, query in (("fast", {}), ("route", {"heatmap": "false"})):  # the `heatmap` query takes the route
            line = f"line-{path}-{abs(hash(name)) % 10**8}"
            headers = {"Content-Type": content_type, **(who if isinstance(who, dict) else {})}
            response = client.post(
                f"/v1/inspect/{product}", content=body, headers=headers, params={**params, **query, "line_id": line}
            )
            answers[path] = (response, _stored(live_server, line_id=line))
    (fast, fast_rows), (route, route_rows) = answers["fast"], answers["route"]
    assert fast.status_code == route.status_code, (name, fast.text, route.text)
    assert fast.headers.get("retry-after") == route.headers.get("retry-after")
    assert fast.headers["content-type"] == route.headers["content-type"] == "application/json"
    assert fast_rows == route_rows == (1 if fast.status_code == 200 else 0)
    if fast.status_code != 200:
        assert fast.json() == route.json() and "Traceback" not in fast.text
        return
    fast_body, route_body = fast.json(), route.json()
    assert fast_body.keys() == route_body.keys()
    assert fast_body["inspection_id"] != route_body["inspection_id"]
    for field in ("product", "verdict", "defect_probability", "defect_type", "threshold", "model_version"):
        assert fast_body[field] == route_body[field], field


class _StampingMiddleware:
    """A middleware added after the app was built: stamps every answer and notes the route each request took."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamped", b"yes")]
            await send(message)

        await self.app(scope, receive, stamped)
        self.seen.append(type(scope.get("route")).__name__)


def test_middleware_and_exception_handlers_added_later_apply_to_the_fast_path(live_server) -> None:
    app = create_app(live_server.settings)
    seen: list[str] = []
    app.add_middleware(_StampingMiddleware, seen=seen)

    @app.exception_handler(ImageDecodeError)  # replaces the app's own mapping for corrupt frames
    async def teapot(_request: Request, exc: ImageDecodeError) -> JSONResponse:
        return JSONResponse({"detail": f"custom: {exc}"}, status_code=418)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until_started(server, thread)
        headers = {"X-API-Key": live_server.keys["camera"], "Content-Type": "image/png"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            good = client.post(f"/v1/inspect/{live_server.product}", content=_frame(3))
            corrupt = client.post(f"/v1/inspect/{live_server.product}", content=b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
            metrics = client.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert good.status_code == 200 and good.headers["x-stamped"] == "yes"
    assert corrupt.status_code == 418 and corrupt.json()["detail"].startswith("custom: ")
    assert corrupt.headers["x-stamped"] == "yes"
    assert seen[:2] == [PlainFrameRoute.__name__, PlainFrameRoute.__name__]  # both took the fast path
    # The app's request metrics (a middleware) counted them under the documented route's template.
    assert 'route="/v1/inspect/{product}",status="200"' in metrics
    assert 'route="/v1/inspect/{product}",status="418"' in metrics
