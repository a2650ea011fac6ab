"""/metrics over real HTTP, and reject messages through the real local Mosquitto broker (127.0.0.1:1883)."""

from __future__ import annotations

import json
import mimetypes
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from inspection.settings import Settings
from serving.app import create_app

pytestmark = pytest.mark.slow
BROKER = ("127.0.0.1", 1883)
INSPECT_ROUTE = "/v1/inspect/{product}"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _noise_png(seed: int) -> bytes:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(seed).integers(60, 200, (128, 128), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


def _scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """A second app on its own uvicorn server (the live_server pattern), stopped on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _defect_images(settings: Settings, product: str) -> list[Path]:
    """The dataset's defect images, interleaved across types: the tiny model flags some types more surely."""
    folders = [
        f for f in sorted(settings.dataset_dir(product).iterdir()) if f.is_dir() and f.name not in ("good", "masks")
    ]
    return [path for group in zip(*(sorted(f.iterdir()) for f in folders), strict=False) for path in group][:20]


def _post_until_defect(client: httpx.Client, product: str, images: list[Path], line_id: str) -> list[dict]:
    """Post defect images until the server flags one; every answer must be 200."""
    answers = []
    for path in images:
        content_type = mimetypes.guess_type(path.name)[0] or "image/png"
        response = client.post(
            f"/v1/inspect/{product}",
            content=path.read_bytes(),
            headers={"Content-Type": content_type},
            params={"line_id": line_id, "camera_id": "cam-1", "frame_id": path.stem},
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if answers[-1]["verdict"] == "defect":
            break
    return answers


def test_metrics_count_requests_latency_batches_and_verdicts(live_server) -> None:
    product = live_server.product
    with live_server.client(None) as scraper, live_server.client() as camera:
        before = _scrape(scraper)
        answers = [
            camera.post(f"/v1/inspect/{product}", content=_noise_png(seed), headers={"Content-Type": "image/png"})
            for seed in range(3)
        ]
        refused = camera.post(f"/v1/inspect/{product}", content=b"hello", headers={"Content-Type": "text/plain"})
        assert camera.get("/no/such/path").status_code == 404
        after = _scrape(scraper)
    assert [a.status_code for a in answers] == [200, 200, 200] and refused.status_code == 415

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    post = {"method": "POST", "route": INSPECT_ROUTE}
    assert delta("inspection_http_requests_total", **post, status="200") == 3
    assert delta("inspection_http_requests_total", **post, status="415") == 1
    assert delta("inspection_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    # Route templates only: no label carries the raw product path.
    assert not any(f"/v1/inspect/{product}" in dict(labels).get("route", "") for _, labels in after)
    assert delta("inspection_http_request_duration_seconds_count", **post) == 4
    assert delta("inspection_http_request_duration_seconds_bucket", **post, le="+Inf") == 4
    assert ("inspection_http_request_duration_seconds_bucket", frozenset({**post, "le": "0.2"}.items())) in after
    assert delta("inspection_inference_batch_size_count", product=product) == 3
    assert delta("inspection_inference_batch_size_bucket", product=product, le="64.0") == 3
    verdicts = [a.json() for a in answers]
    for verdict in ("pass", "defect"):
        expected = sum(v["verdict"] == verdict for v in verdicts)
        counted = sum(
            value - before.get((name, labels), 0.0)
            for (name, labels), value in after.items()
            if name == "inspection_verdicts_total" and ("verdict", verdict) in labels and ("product", product) in labels
        )
        assert counted == expected, verdict
    assert _value(after, "inspection_queue_depth", product=product) == 0


def test_a_defect_publishes_a_reject_message_on_the_lines_topic(live_server) -> None:
    prefix = f"test/{uuid.uuid4().hex}"
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscriber.on_message = lambda _c, _u, message: received.put(message)
    subscriber.on_subscribe = lambda *_args: subscribed.set()
    subscriber.connect(*BROKER)
    subscriber.loop_start()
    try:
        subscriber.subscribe(f"{prefix}/#", qos=1)
        assert subscribed.wait(10), "broker did not confirm the subscription"
        settings = live_server.settings.model_copy(
            update={"mqtt_url": "mqtt://127.0.0.1:1883", "mqtt_topic_prefix": prefix}
        )
        with (
            _serving(settings) as url,
            httpx.Client(base_url=url, headers={"X-API-Key": live_server.keys["camera"]}, timeout=30) as camera,
        ):
            answers = _post_until_defect(
                camera, live_server.product, _defect_images(settings, live_server.product), "line-7"
            )
            defect = answers[-1]
            assert defect["verdict"] == "defect", "the model flagged none of the defect images"
            # Passes drawn for the audit (at the product's default pass rate) get a divert on their own topic.
            audited = [a["inspection_id"] for a in answers if a["verdict"] == "pass" and a["audit"]]
            messages = [received.get(timeout=10) for _ in range(1 + len(audited))]
            metrics = _scrape(camera)
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    rejects = [m for m in messages if m.topic == f"{prefix}/line-7"]
    diverts = [m for m in messages if m.topic == f"{prefix}/line-7/audit"]
    assert sorted(json.loads(m.payload)["inspection_id"] for m in diverts) == sorted(audited)
    assert all(json.loads(m.payload)["audit"] is True for m in diverts)
    assert len(rejects) == 1
    message = rejects[0]
    assert message.qos == 1
    payload = json.loads(message.payload)
    assert payload["verdict"] == "defect" and payload["audit"] == defect["audit"]
    assert payload["inspection_id"] == defect["inspection_id"] and payload["product"] == live_server.product
    assert payload["line_id"] == "line-7" and payload["camera_id"] == "cam-1" and payload["frame_id"]
    assert payload["defect_type"] == defect["defect_type"] and payload["model_version"] == defect["model_version"]
    assert payload["defect_probability"] == pytest.approx(defect["defect_probability"]) and payload["at"]
    assert received.empty(), "one defect, one message (and one per audited pass)"
    assert _value(metrics, "inspection_reject_publish_total", result="sent") == 1 + len(audited)
    assert _value(metrics, "inspection_reject_broker_connected") == 1


def test_an_unreachable_broker_never_fails_an_inspection(live_server) -> None:
    settings = live_server.settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"})
    with (
        _serving(settings) as url,
        httpx.Client(base_url=url, headers={"X-API-Key": live_server.keys["camera"]}, timeout=30) as camera,
    ):
        answers = _post_until_defect(
            camera, live_server.product, _defect_images(settings, live_server.product), "line-8"
        )
        metrics = _scrape(camera)
    assert answers[-1]["verdict"] == "defect", "the model flagged none of the defect images"
    assert _value(metrics, "inspection_reject_broker_connected") == 0
    # Kept by the client for a reconnect, not lost and not blocking: the answer above was already a 200.
    audited = sum(a["verdict"] == "pass" and a["audit"] for a in answers)
    assert _value(metrics, "inspection_reject_publish_total", result="queued_offline") == 1 + audited
