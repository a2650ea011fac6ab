"""The JSON the dashboard reads, over real HTTP: who am I, throughput, QA's review queue and archived images."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _png(seed: int) -> bytes:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(seed).integers(60, 200, (128, 128), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


def test_me_names_the_role_of_each_key(live_server) -> None:
    for role in ("camera", "qa", "manager"):
        with live_server.client(role) as client:
            assert client.get("/v1/me").json() == {"name": f"test {role}", "role": role}
    with live_server.client(None) as anonymous:
        assert anonymous.get("/v1/me").status_code == 401


def test_products_list_the_served_defect_types_and_threshold(live_server) -> None:
    with live_server.client("manager") as manager:
        (widget,) = [p for p in manager.get("/v1/products").json() if p["product"] == live_server.product]
    assert widget["served_version"] >= 1 and 0 < widget["threshold"] < 1
    assert set(widget["defect_types"]) == {"crack", "scratch", "spot", "stain"}


def test_throughput_counts_the_frames_just_sent(live_server) -> None:
    line = f"line-tp-{uuid.uuid4().hex[:8]}"
    with live_server.client() as camera:
        for seed in range(5):
            response = camera.post(
                f"/v1/inspect/{live_server.product}",
                content=_png(seed),
                headers={"Content-Type": "image/png"},
                params={"line_id": line},
            )
            assert response.status_code == 200
    with live_server.client("manager") as manager:
        body = manager.get("/v1/stats/throughput", params={"line": line, "minutes": 5}).json()
        assert manager.get("/v1/stats/throughput", params={"minutes": 0}).status_code == 422
    with live_server.client("camera") as camera:
        assert camera.get("/v1/stats/throughput").status_code == 403
    assert body["n"] == 5 and len(body["per_minute"]) == 5
    assert sum(m["n"] for m in body["per_minute"]) == 5
    assert body["frames_per_second"] == pytest.approx(5 / 60)
    assert body["latency_ms"]["p50"] > 0


def test_review_queue_holds_defects_and_near_misses_with_their_archived_images(live_server) -> None:
    source = live_server.settings.dataset_dir(live_server.product)
    frames = sorted((source / "crack").glob("*.png"))[:3] + sorted((source / "good").glob("*.png"))[:5]
    line = f"line-review-{uuid.uuid4().hex[:8]}"
    with live_server.client() as camera:
        answers = [
            camera.post(
                f"/v1/inspect/{live_server.product}",
                content=path.read_bytes(),
                headers={"Content-Type": "image/png"},
                params={"line_id": line},
            ).json()
            for path in frames
        ]
    with live_server.client("qa") as qa:
        page = qa.get("/v1/inspections", params={"line_id": line, "review": "true", "limit": 50}).json()
        everything = qa.get("/v1/inspections", params={"line_id": line, "limit": 50}).json()
    expected = {
        a["inspection_id"]
        for a in answers
        if a["verdict"] == "defect" or a["defect_probability"] >= 0.5 * a["threshold"]
    }
    assert {item["id"] for item in page["items"]} == expected and expected
    assert everything["total"] == len(frames)
    for item in page["items"]:  # every frame in the review queue was archived, so QA can see it
        assert item["image_url"] == f"/v1/inspections/{item['id']}/image"
        # defects come with where the classifier's map puts the defect; low-confidence passes did not ask for one
        heatmap = f"/v1/inspections/{item['id']}/heatmap" if item["verdict"] == "defect" else None
        assert item["heatmap_url"] == heatmap
    item = page["items"][0]
    with live_server.client("qa") as qa:
        image = qa.get(item["image_url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (128, 128)
        assert qa.get(f"/v1/inspections/{uuid.uuid4()}/image").status_code == 404
    for role in ("camera", "manager"):  # frames are QA's; managers read the aggregates
        with live_server.client(role) as other:
            assert other.get(item["image_url"]).status_code == 403
