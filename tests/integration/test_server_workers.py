"""`inspection serve --workers 2`: two server processes on one port, each with its own engine, keep every guarantee
of one: one row per answer, bad frames refused, a promotion reaching both workers under load, a SIGTERM drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from benchmarks.server_load import free_port, kill_process_group, start_process
from cli.main import runners_per_worker
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, count_inspections
from inspection.storage.schema import Inspection
from tests.serving.test_server import _frame, eight_cameras
from tests.serving.test_server_promotion import _home_with_two_exported_versions

pytestmark = pytest.mark.slow
WORKERS = 2
REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkersServer:
    url: str
    process: subprocess.Popen[bytes]
    settings: object
    product: str
    keys: dict[str, str]

    def client(self, role: str = "camera") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[role]}, timeout=60)

    def stored(self, line_id: str) -> int:
        sessions = open_database(self.settings.resolved_database_url)  # type: ignore[attr-defined]
        return count_inspections(sessions, InspectionFilter(line_id=line_id))


@pytest.fixture(scope="module")
def workers_server(trained_product, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersServer]:
    """`inspection serve --workers 2` as its own process on a private home with versions 1 (champion) and 2."""
    settings = _home_with_two_exported_versions(trained_product, tmp_path_factory.mktemp("workers"))
    sessions = open_database(settings.resolved_database_url)
    keys = {role: create_api_key(sessions, role, f"workers {role}") for role in ("camera", "qa")}
    env = {
        **os.environ,
        "INSPECTION_HOME": str(settings.home),
        "INSPECTION_CONFIGS_DIR": str(settings.configs_dir),
        "INSPECTION_MODEL_POLL_SECONDS": "0.2",
    }
    env.pop("INSPECTION_ORT_THREADS", None)
    port = free_port()
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", str(WORKERS)]
    process = start_process(command, env, port, REPO, started_lines=WORKERS)
    yield WorkersServer(f"http://127.0.0.1:{port}", process, settings, trained_product.product, keys)
    kill_process_group(process)  # the workers too, should a test have left the master dead or stuck


def test_the_cores_are_shared_out_among_the_workers() -> None:
    assert runners_per_worker(2, 1, cores=2) == 1
    assert runners_per_worker(2, 1, cores=8) == 4
    assert runners_per_worker(3, 1, cores=2) == 1  # never none
    assert runners_per_worker(2, 2, cores=8) == 2
    assert runners_per_worker(2, 0, cores=8) == 1  # ORT takes the cores itself


def _worker_of(client: httpx.Client) -> int:
    """The pid of the worker behind this client's keep-alive connection."""
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["worker"])


def _clients_on_every_worker(server: WorkersServer, per_worker: int) -> list[tuple[httpx.Client, int]]:
    """`per_worker` camera clients held on each worker's connections (the kernel picks the worker per connection,
    so clients are opened until each worker holds its share)."""
    kept: list[tuple[httpx.Client, int]] = []
    for _ in range(200):
        client = server.client()
        worker = _worker_of(client)
        if sum(pid == worker for _, pid in kept) < per_worker:
            kept.append((client, worker))
        else:
            client.close()
        if len(kept) == WORKERS * per_worker:
            return kept
    raise AssertionError(f"the connections did not reach {WORKERS} workers: {[pid for _, pid in kept]}")


def _post(client: httpx.Client, product: str, frame: bytes, line_id: str, camera: str) -> httpx.Response:
    return client.post(
        f"/v1/inspect/{product}",
        content=frame,
        headers={"Content-Type": "image/png"},
        params={"line_id": line_id, "camera_id": camera},
    )


def test_bad_frames_are_refused_by_every_worker(workers_server: WorkersServer) -> None:
    truncated = cv2.imencode(".jpg", np.full((200, 200), 90, np.uint8))[1].tobytes()[:300]
    for client, _worker in _clients_on_every_worker(workers_server, 1):
        with closing(client):
            url = f"/v1/inspect/{workers_server.product}"
            assert client.post(url, content=truncated, headers={"Content-Type": "image/jpeg"}).status_code == 400
            assert client.post(url, content=b"hello", headers={"Content-Type": "text/plain"}).status_code == 415
            assert client.post(url, content=_frame(0), headers={"Content-Type": "image/png"}).status_code == 200


def test_eight_cameras_on_two_workers_every_answer_is_one_row(workers_server: WorkersServer) -> None:
    clients = [client for client, _worker in _clients_on_every_worker(workers_server, 4)]

    def post(index: int, frame: bytes) -> httpx.Response:
        return _post(clients[index], workers_server.product, frame, "line-workers", f"cam-{index}")

    try:
        answered = eight_cameras(post)
    finally:
        for client in clients:
            client.close()
    assert len(answered) == len(set(answered)) == 1600
    assert workers_server.stored("line-workers") == 1600


def test_a_promotion_under_load_reaches_both_workers(workers_server: WorkersServer) -> None:
    product = workers_server.product
    frames = [_frame(seed) for seed in range(5)]
    clients = _clients_on_every_worker(workers_server, 2)
    promoted = threading.Event()

    def camera(index: int) -> list[int]:
        client, _worker = clients[index]
        versions: list[int] = []
        with closing(client):
            # Until this camera's worker has answered it with v2 twenty times (or it gives up).
            while versions.count(2) < 20 and len(versions) < 3000:
                response = _post(client, product, frames[len(versions) % 5], "line-workers-promo", f"cam-{index}")
                assert response.status_code == 200, response.text
                versions.append(response.json()["model_version"])
                if index == 0 and len(versions) == 30:
                    with workers_server.client("qa") as qa:
                        answer = qa.post(f"/v1/products/{product}/models/2/promote", json={})
                    assert answer.status_code == 200, answer.text
                    promoted.set()
        return versions

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        per_camera = list(pool.map(camera, range(len(clients))))
    assert promoted.is_set()
    for versions in per_camera:
        assert versions == sorted(versions), "a camera saw the old model after the new one"
        assert versions.count(2) == 20, "a worker never served the promoted model"
    assert len({worker for _, worker in clients}) == WORKERS  # so both workers swapped, each on its own poll
    sessions = open_database(workers_server.settings.resolved_database_url)  # type: ignore[attr-defined]
    query = select(Inspection.model_version, func.count()).where(Inspection.line_id == "line-workers-promo")
    with sessions() as session:
        stored = dict(session.execute(query.group_by(Inspection.model_version)).all())
    answered = [version for versions in per_camera for version in versions]
    assert stored == {1: answered.count(1), 2: answered.count(2)}, "every answered frame is a row of its version"


def test_sigterm_drains_both_workers_and_every_answer_is_a_row(workers_server: WorkersServer) -> None:
    """Last in this module: it stops the server."""
    frames = [_frame(seed) for seed in range(5)]
    clients = _clients_on_every_worker(workers_server, 2)
    answered: list[str] = []
    started = threading.Barrier(len(clients) + 1)

    def camera(index: int) -> None:
        client, _worker = clients[index]
        with closing(client):
            started.wait()
            for i in range(10_000):
                try:
                    response = _post(client, workers_server.product, frames[i % 5], "line-workers-stop", f"c{index}")
                except httpx.TransportError:
                    return  # the worker closed this connection after its last answer
                if response.status_code != 200:
                    assert response.status_code == 503, response.text  # refused while shutting down, not lost
                    return
                answered.append(response.json()["inspection_id"])

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        streams = [pool.submit(camera, index) for index in range(len(clients))]
        started.wait()
        while len(answered) < 40:
            time.sleep(0.05)
        workers_server.process.send_signal(signal.SIGTERM)
        assert workers_server.process.wait(timeout=60) == 0
        for stream in streams:
            stream.result()
    assert len(answered) == len(set(answered)) >= 40
    assert workers_server.stored("line-workers-stop") == len(answered)
