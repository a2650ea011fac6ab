"""The server over real HTTP on loopback: verdicts, every answer stored, bad input refused, roles enforced."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, count_inspections
from serving.routes.inspect import InspectResponse

pytestmark = pytest.mark.slow


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def _frame(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return _png(rng.integers(60, 200, (128, 128), dtype=np.uint8))


def _png_bomb(side: int = 20000) -> bytes:
    # A valid 1-bit PNG header declaring side x side pixels with a tiny compressed body: a decompression bomb.
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side // 8 + 1) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def eight_cameras(post: Callable[[int, bytes], httpx.Response], frames_each: int = 200) -> list[str]:
    """Eight camera threads, each posting `frames_each` frames through `post(camera index, frame)`; every answer
    must be a 200, and the inspection ids of all of them are returned."""
    frames = [_frame(seed) for seed in range(10)]

    def camera(index: int) -> list[str]:
        ids = []
        for i in range(frames_each):
            response = post(index, frames[i % 10])
            assert response.status_code == 200, response.text
            ids.append(response.json()["inspection_id"])
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [i for ids in pool.map(camera, range(8)) for i in ids]


def _stored(live_server, **where) -> int:
    sessions = open_database(live_server.settings.resolved_database_url)
    return count_inspections(sessions, InspectionFilter(**where))


def test_health_and_readiness(live_server) -> None:
    with live_server.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
    assert ready["ready"] and ready["database"] and ready["models"] == {live_server.product: 1}


def test_raw_and_multipart_frames_get_verdicts_that_are_stored(live_server) -> None:
    with live_server.client() as client:
        raw = client.post(
            f"/v1/inspect/{live_server.product}",
            content=_frame(1),
            headers={"Content-Type": "image/png"},
            params={
                "camera_id": "cam-7",
                "line_id": "line-raw",
                "frame_id": "f-1",
                "captured_at": "2026-11-29T08:00:00",
            },
        )
        multipart = client.post(
            f"/v1/inspect/{live_server.product}",
            files={"file": ("frame.png", _frame(2), "image/png")},
            headers={"X-Line-Id": "line-multipart"},
        )
    assert raw.status_code == 200, raw.text
    body = raw.json()
    # The route answers a plain dict for speed; it must be exactly the documented InspectResponse.
    assert InspectResponse.model_validate(body).model_dump() == body
    assert body["verdict"] in ("pass", "defect") and body["model_version"] == 1
    assert 0 <= body["defect_probability"] <= 1 and body["threshold"] > 0
    assert multipart.status_code == 200, multipart.text
    assert _stored(live_server, line_id="line-raw") == 1 and _stored(live_server, line_id="line-multipart") == 1


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status"),
    [
        (
            "truncated jpeg",
            cv2.imencode(".jpg", np.full((200, 200), 90, np.uint8))[1].tobytes()[:300],
            "image/jpeg",
            400,
        ),
        ("empty body", b"", "image/png", 400),
        ("text with an image type", b"hello, I am not a picture", "image/png", 400),
        ("unsupported type", b"hello", "text/plain", 415),
        ("20000x20000 png bomb", _png_bomb(), "image/png", 413),
    ],
)
def test_bad_frames_get_a_clear_4xx_and_the_server_keeps_serving(live_server, name, body, content_type, status) -> None:
    with live_server.client() as client:
        response = client.post(
            f"/v1/inspect/{live_server.product}", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status, (name, response.text)
        assert "detail" in response.json() and "Traceback" not in response.text
        assert (
            client.post(
                f"/v1/inspect/{live_server.product}", content=_frame(), headers={"Content-Type": "image/png"}
            ).status_code
            == 200
        )


def test_sixteen_bit_and_rgba_frames_are_scored(live_server) -> None:
    sixteen = _png((np.random.default_rng(3).integers(0, 65535, (100, 100))).astype(np.uint16))
    rgba = io.BytesIO()
    Image.fromarray(np.full((90, 120, 4), 140, np.uint8), "RGBA").save(rgba, format="PNG")
    with live_server.client() as client:
        for data in (sixteen, rgba.getvalue()):
            response = client.post(
                f"/v1/inspect/{live_server.product}", content=data, headers={"Content-Type": "image/png"}
            )
            assert response.status_code == 200, response.text


def test_overlong_frame_fields_are_refused_before_scoring(live_server) -> None:
    with live_server.client() as camera:
        response = camera.post(
            f"/v1/inspect/{live_server.product}",
            content=_frame(),
            headers={"Content-Type": "image/png"},
            params={"frame_id": "f" * 129, "line_id": "line-long-fields"},
        )
        assert response.status_code == 400 and "frame_id" in response.json()["detail"]
    assert _stored(live_server, line_id="line-long-fields") == 0


def test_unknown_product_keys_and_roles(live_server) -> None:
    frame, png = _frame(), {"Content-Type": "image/png"}
    with live_server.client() as camera:
        assert camera.post("/v1/inspect/no-such-product", content=frame, headers=png).status_code == 404
        assert camera.post("/v1/inspect/Bad..Name", content=frame, headers=png).status_code == 400
        assert camera.get("/v1/inspections").status_code == 403  # cameras only inspect
    with live_server.client(None) as anonymous:
        assert anonymous.post(f"/v1/inspect/{live_server.product}", content=frame, headers=png).status_code == 401
        wrong = {**png, "X-API-Key": "insp_not-a-real-key"}
        assert anonymous.post(f"/v1/inspect/{live_server.product}", content=frame, headers=wrong).status_code == 401
    with live_server.client("manager") as manager:
        assert manager.post(f"/v1/inspect/{live_server.product}", content=frame, headers=png).status_code == 403


def test_qa_feedback_and_listing(live_server) -> None:
    with live_server.client() as camera:
        answer = camera.post(
            f"/v1/inspect/{live_server.product}",
            content=_frame(9),
            headers={"Content-Type": "image/png"},
            params={"line_id": "line-qa"},
        ).json()
        assert (
            camera.post(f"/v1/inspections/{answer['inspection_id']}/feedback", json={"label": "good"}).status_code
            == 403
        )
    with live_server.client("qa") as qa:
        stored = qa.post(f"/v1/inspections/{answer['inspection_id']}/feedback", json={"label": "Scratch"})
        assert stored.status_code == 200 and stored.json()["feedback_label"] == "scratch"
        assert qa.post("/v1/inspections/nope/feedback", json={"label": "good"}).status_code == 404
        assert (
            qa.post(f"/v1/inspections/{answer['inspection_id']}/feedback", json={"label": "no good!"}).status_code
            == 400
        )
        page = qa.get("/v1/inspections", params={"line_id": "line-qa", "has_feedback": True}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == answer["inspection_id"]


def test_eight_concurrent_cameras_every_answer_is_one_row(live_server) -> None:
    clients = [live_server.client() for _ in range(8)]  # one keep-alive connection per camera

    def post(index: int, frame: bytes) -> httpx.Response:
        return clients[index].post(
            f"/v1/inspect/{live_server.product}",
            content=frame,
            headers={"Content-Type": "image/png"},
            params={"line_id": "line-load", "camera_id": f"cam-{index}"},
        )

    try:
        answered = eight_cameras(post)
    finally:
        for client in clients:
            client.close()
    assert len(answered) == len(set(answered)) == 1600
    assert _stored(live_server, line_id="line-load") == 1600
