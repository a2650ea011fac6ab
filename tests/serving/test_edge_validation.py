"""Bad input is refused at the edge with a 4xx and a JSON body, on SQLite and on PostgreSQL, before any frame is
scored; times keep their instant (offsets) on both databases; the raw-body size limit holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import cv2
import numpy as np
import pytest

from tests.conftest import LiveServer
from tests.serving.test_server import _frame

BIG = "99999999999999999999"
CALENDAR_ENDS = ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest) -> LiveServer:
    """The live server on SQLite, or one on a fresh PostgreSQL database."""
    name = "live_server" if request.param == "sqlite" else "postgres_server"
    found: LiveServer = request.getfixturevalue(name)
    return found


def _post(server: LiveServer, params: dict[str, str], product: str | None = None, role: str = "camera"):
    with server.client(role) as camera:
        return camera.post(
            f"/v1/inspect/{product or server.product}",
            content=_frame(),
            headers={"Content-Type": "image/png"},
            params=params,
        )


def _scored(server: LiveServer) -> float:
    """Frames this server has scored so far (its Prometheus verdict counter)."""
    with server.client(None) as anonymous:
        text = anonymous.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("inspection_verdicts_total{") and f'product="{server.product}"' in line
    )


def test_calendar_end_capture_times_are_refused_and_the_list_stays_readable(server: LiveServer) -> None:
    for value in CALENDAR_ENDS:
        refused = _post(server, {"captured_at": value, "line_id": "calendar"})
        assert refused.status_code == 400 and "1970-2199" in refused.json()["detail"]
    with server.client("qa") as qa:
        assert qa.get("/v1/inspections").status_code == 200


def test_control_characters_and_huge_integers_are_refused_before_scoring(server: LiveServer) -> None:
    before = _scored(server)
    for field in ("line_id", "camera_id", "frame_id"):
        answer = _post(server, {field: "line\x00one"})
        assert answer.status_code == 400 and "control character" in answer.json()["detail"]
    # Percent-encoded: httpx refuses a raw NUL in a path.
    assert _post(server, {}, product="wid%00get").status_code == 400
    assert _scored(server) == before  # nothing was scored for a refused request
    with server.client("qa") as qa:
        assert qa.get("/v1/inspections/ab%00cd/image").status_code == 422
        assert qa.post("/v1/inspections/ab%00cd/feedback", json={"label": "good"}).status_code == 422
        assert qa.get("/v1/inspections", params={"line_id": "a\x00b"}).status_code == 422
        assert qa.get("/v1/inspections", params={"product": "wid\x00get"}).status_code == 422
        assert qa.get("/v1/inspections", params={"offset": BIG}).status_code == 422
        assert qa.get(f"/v1/products/{server.product}/shadow", params={"champion": BIG}).status_code == 422
        for route in ("/v1/inspections", "/v1/stats"):
            for name in ("since", "until"):
                for value in (*CALENDAR_ENDS, "0.5"):
                    answer = qa.get(route, params={name: value})
                    assert answer.status_code == 422, (route, name, value, answer.text)
                    assert "detail" in answer.json()


def test_offsets_are_kept_on_both_databases(server: LiveServer) -> None:
    line = f"tz-{server.url.rsplit(':', 1)[1]}"
    assert _post(server, {"captured_at": "2026-12-07T10:00:00+02:00", "line_id": line}).status_code == 200
    with server.client("qa") as qa:
        (item,) = qa.get("/v1/inspections", params={"line_id": line}).json()["items"]
        assert datetime.fromisoformat(item["captured_at"]) == datetime.fromisoformat("2026-12-07T08:00:00+00:00")
        received = datetime.fromisoformat(item["received_at"])
        assert received.utcoffset() is not None  # a date-time with its offset, as the schema declares
        same = received.astimezone().isoformat()  # the same instant, written in the machine's own offset
        utc = received.isoformat()
        for since in (same, utc, received.astimezone(datetime.fromisoformat("2026-01-01T00:00+05:00").tzinfo)):
            listed = qa.get("/v1/inspections", params={"line_id": line, "since": str(since)}).json()
            assert listed["total"] == 1, since
        labelled = qa.post(f"/v1/inspections/{item['id']}/feedback", json={"label": "good"}).json()
        assert datetime.fromisoformat(labelled["feedback_at"]).utcoffset() is not None


def _jpeg_then_zeros(total: int) -> Iterator[bytes]:
    ok, encoded = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    assert ok
    yield encoded.tobytes()
    sent, chunk = 0, bytes(1 << 20)
    while sent < total:
        yield chunk
        sent += len(chunk)


def test_a_raw_body_over_the_limit_is_413(live_server: LiveServer) -> None:
    limit = live_server.settings.max_body_bytes
    with live_server.client("camera") as camera:
        answer = camera.post(
            f"/v1/inspect/{live_server.product}",
            content=_jpeg_then_zeros(limit + 5_000_000),
            headers={"Content-Type": "image/jpeg"},
        )
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]


def test_feedback_labels_must_be_known_defect_types(live_server: LiveServer) -> None:
    answer = _post(live_server, {"line_id": "labels"})
    assert answer.status_code == 200
    url = f"/v1/inspections/{answer.json()['inspection_id']}/feedback"
    with live_server.client("qa") as qa:
        refused = qa.post(url, json={"label": "bf"})
        assert refused.status_code == 400 and "new_type" in refused.json()["detail"]
        assert qa.post(url, json={"label": "scratch"}).json()["feedback_label"] == "scratch"
        assert qa.post(url, json={"label": "bf", "new_type": True}).json()["feedback_label"] == "bf"
