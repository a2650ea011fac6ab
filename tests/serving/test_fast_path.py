"""The camera's plain frame skips FastAPI's machinery (serving.fast_path): it must answer exactly as the route does,
errors included, and leave every other request to the full stack."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving.fast_path import inspect_product
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
