"""Two replicas with their own INSPECTION_HOMEs, one database and one S3-compatible object store (a real S3 API on
loopback): a frame archived by replica A is shown, with its heatmap, by replica B, and the reviewed-frames
importer of a third home reads it from the store."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from datasets.importers.reviewed import import_reviewed
from inspection.settings import Settings
from inspection.storage.database import open_database
from serving.app import create_app
from tests.conftest import S3_BUCKET, free_port

pytestmark = pytest.mark.slow


@contextmanager
def _replica(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1200):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    assert server.started, "replica did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _with_store(settings: Settings, endpoint: str, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "archive_url": f"s3://{S3_BUCKET}/replicas",
            "s3_endpoint_url": endpoint,
            "s3_region": "us-east-1",
            **changes,
        }
    )


def test_a_frame_archived_by_one_replica_is_shown_by_another(
    live_server, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials through boto3's own chain (as from a Kubernetes Secret), not through the settings.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    shared_db = live_server.settings.resolved_database_url
    replica_a = _with_store(live_server.settings, s3_endpoint)
    replica_b = _with_store(live_server.settings, s3_endpoint, home=tmp_path / "b", database_url=shared_db)
    source = live_server.settings.dataset_dir(live_server.product)
    frame = sorted((source / "crack").glob("*.png"))[0].read_bytes()
    headers = {"X-API-Key": live_server.keys["camera"], "Content-Type": "image/png"}
    qa = {"X-API-Key": live_server.keys["qa"]}
    with _replica(replica_a) as url_a, _replica(replica_b) as url_b:
        answer = httpx.post(
            f"{url_a}/v1/inspect/{live_server.product}",
            content=frame,
            headers=headers,
            params={"heatmap": "true", "line_id": "line-s3"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        inspection_id = answer.json()["inspection_id"]
        row = httpx.get(f"{url_b}/v1/inspections", headers=qa, params={"line_id": "line-s3"}, timeout=30).json()
        (item,) = row["items"]
        assert item["id"] == inspection_id
        assert item["archive_path"].startswith(f"s3://{S3_BUCKET}/replicas/{live_server.product}/")
        image = httpx.get(f"{url_b}{item['image_url']}", headers=qa, timeout=30)
        assert image.status_code == 200 and image.content == frame
        assert image.headers["content-type"] == "image/png"
        heatmap = httpx.get(f"{url_b}{item['heatmap_url']}", headers=qa, timeout=30)
        assert heatmap.status_code == 200 and heatmap.content.startswith(b"\x89PNG")
        # Drawn once, kept in the store beside the frame: replica A serves the same overlay without drawing it.
        again = httpx.get(f"{url_a}{item['heatmap_url']}", headers=qa, timeout=30)
        assert again.content == heatmap.content
        feedback = httpx.post(
            f"{url_b}/v1/inspections/{inspection_id}/feedback", headers=qa, json={"label": "crack"}, timeout=30
        )
        assert feedback.status_code == 200
    assert not (tmp_path / "b" / "archive").exists()
    # QA's importer on a third machine: its own home with the product's dataset, the rows and the store shared.
    importer = _with_store(live_server.settings, s3_endpoint, home=tmp_path / "c", database_url=shared_db)
    shutil.copytree(source, importer.dataset_dir(live_server.product))
    report = import_reviewed(importer, open_database(shared_db), live_server.product)
    assert report.imported == {"crack": 1}
    (copied,) = importer.dataset_dir(live_server.product).glob(f"crack/*{inspection_id}.png")
    assert copied.read_bytes() == frame


def _readyz(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=10).json()


def _archive_status(url: str, until: str, timeout_s: float = 30.0) -> str:
    """The replica's archive status once it is no longer "unchecked" (and, when `until` is given, once it has it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = _readyz(url)["archive"]
        if (status != "unchecked" and (not until or until in status)) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_a_missing_bucket_shows_in_readyz_at_startup_and_clears_once_it_exists(
    live_server, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    bucket = f"missing-{tmp_path.name.lower().replace('_', '-')}"[:60]
    settings = _with_store(
        live_server.settings, s3_endpoint, archive_url=f"s3://{bucket}/frames", model_poll_seconds=0.2
    )
    with _replica(settings) as url:
        status = _archive_status(url, until=bucket)
        assert bucket in status and "cannot be reached" in status, status
        assert _readyz(url)["ready"] is True  # every replica shares the store: it names the fault, stays in
        client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        assert _archive_status(url, until="ok") == "ok"


def test_a_reachable_store_and_the_local_folder_report_ok(
    live_server, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    with _replica(_with_store(live_server.settings, s3_endpoint)) as url:
        assert _archive_status(url, until="ok") == "ok"
    with _replica(live_server.settings) as url:
        assert _archive_status(url, until="ok") == "ok"
