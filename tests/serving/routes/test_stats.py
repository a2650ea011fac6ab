"""GET /v1/stats over real HTTP: roles, validation, and figures that follow frames and QA feedback."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

from inspection.metrics import wilson_interval

pytestmark = pytest.mark.slow


def _frame() -> bytes:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(5).integers(60, 200, (128, 128), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


def test_roles_and_validation(live_server) -> None:
    with live_server.client("manager") as manager:
        response = manager.get("/v1/stats", params={"product": live_server.product, "bucket": "day"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"filters", "totals", "by_product", "by_line", "buckets"} <= set(body)
        assert {"n", "n_defect", "defect_rate", "per_type", "qa"} <= set(body["totals"])
        assert {"n_reviewed", "miss_rate", "false_detection_rate", "warning"} <= set(body["totals"]["qa"])
        bad = manager.get("/v1/stats", params={"bucket": "week"})
        assert bad.status_code == 422 and "Traceback" not in bad.text
        backwards = manager.get("/v1/stats", params={"since": "2026-11-30T00:00:00Z", "until": "2026-11-29T00:00:00Z"})
        assert backwards.status_code == 400 and "earlier" in backwards.json()["detail"]
    with live_server.client("qa") as qa:
        assert qa.get("/v1/stats").status_code == 200
    with live_server.client("camera") as camera:
        assert camera.get("/v1/stats").status_code == 403
    with live_server.client(None) as anonymous:
        assert anonymous.get("/v1/stats").status_code == 401


def test_stats_follow_frames_and_feedback(live_server) -> None:
    line = f"line-stats-{uuid.uuid4().hex[:8]}"
    with live_server.client() as camera:
        answer = camera.post(
            f"/v1/inspect/{live_server.product}",
            content=_frame(),
            headers={"Content-Type": "image/png"},
            params={"line_id": line},
        )
        assert answer.status_code == 200, answer.text
    verdict = answer.json()["verdict"]
    with live_server.client("qa") as qa:
        feedback = qa.post(f"/v1/inspections/{answer.json()['inspection_id']}/feedback", json={"label": "good"})
        assert feedback.status_code == 200, feedback.text
    with live_server.client("manager") as manager:
        stats = manager.get("/v1/stats", params={"line": line, "bucket": "hour"}).json()
    assert stats["filters"]["line_id"] == line and list(stats["by_line"]) == [line]
    totals = stats["totals"]
    assert totals["n"] == 1 and totals["n_defect"] == (verdict == "defect")
    assert totals["qa"]["n_reviewed"] == 1 and totals["qa"]["miss_rate"]["n"] == 0
    flagged = int(verdict == "defect")
    assert totals["qa"]["false_detection_rate"] == {
        "rate": float(flagged),
        "k": flagged,
        "n": 1,
        "ci95": list(wilson_interval(flagged, 1)),
    }
    assert "too few to trust the false-detection rate" in totals["qa"]["warning"]
    assert len(stats["buckets"]) == 1 and stats["buckets"][0]["n"] == 1
