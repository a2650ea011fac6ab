"""The camera client against real servers on loopback: counts, database rows, pacing, dropping, CLI errors."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from cli.main import app as cli_app
from inspection.errors import InspectionError
from inspection.storage.database import open_database
from inspection.storage.inspections import InspectionFilter, list_inspections
from serving.camera_client import stream_frames

if TYPE_CHECKING:
    from tests.conftest import LiveServer


# Copied from tests/serving/conftest.py: `tests` is not importable when pytest runs as .venv/bin/pytest.
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return server, thread


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory, synthetic_source: Path) -> Path:
    """About 20 synthetic images (no masks) in label subfolders, so frame ids are relative POSIX paths."""
    root = tmp_path_factory.mktemp("camera-frames")
    images = sorted(p for p in synthetic_source.rglob("*.png") if "masks" not in p.relative_to(synthetic_source).parts)
    for path in images[:: max(1, len(images) // 20)][:20]:
        target = root / path.relative_to(synthetic_source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def _rows(live: LiveServer, camera_id: str) -> list[tuple[str | None, str]]:
    rows, _ = list_inspections(
        open_database(live.settings.resolved_database_url), InspectionFilter(camera_id=camera_id), limit=500
    )
    assert all(row.captured_at is not None for row in rows)
    return sorted((row.frame_id, row.id) for row in rows)


def test_folder_is_streamed_and_every_answer_is_a_row(live_server: LiveServer, frames_dir: Path) -> None:
    camera_id = f"cam-{uuid.uuid4().hex[:8]}"
    summary = stream_frames(
        frames_dir,
        product=live_server.product,
        server=live_server.url,
        api_key=live_server.keys["camera"],
        fps=20,
        concurrency=20,  # one slot per file: this test is about counts and rows; dropping has its own test
        line_id="camera-test-line",
        camera_id=camera_id,
        show_progress=False,
        keep_results=True,
    )
    files = _files(frames_dir)
    assert summary.read == summary.sent == summary.answered == len(files) >= 15
    assert summary.errors == 0 and summary.dropped == 0
    assert sum(summary.verdicts.values()) == summary.answered
    assert summary.latency_ms["p50"] is not None and summary.server_latency_ms_p50 is not None
    rows = _rows(live_server, camera_id)
    assert len(rows) == summary.answered
    assert [frame_id for frame_id, _ in rows] == files
    assert sorted((r.frame_id, r.inspection_id) for r in summary.results) == rows


def test_video_frames_are_jpeg_encoded_and_answered(live_server: LiveServer, frames_dir: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for path in sorted(frames_dir.rglob("*.png"))[:15]:
        writer.write(cv2.imread(str(path), cv2.IMREAD_COLOR))
    writer.release()
    camera_id = f"cam-{uuid.uuid4().hex[:8]}"
    summary = stream_frames(
        video,
        product=live_server.product,
        server=live_server.url,
        api_key=live_server.keys["camera"],
        fps=15,
        concurrency=15,
        camera_id=camera_id,
        show_progress=False,
    )
    assert summary.read == summary.sent == summary.answered == 15
    assert summary.errors == 0
    assert [frame_id for frame_id, _ in _rows(live_server, camera_id)] == sorted(f"clip.avi#{i}" for i in range(15))


def test_frames_are_paced_at_the_target_rate(live_server: LiveServer, frames_dir: Path) -> None:
    summary = stream_frames(
        frames_dir,
        product=live_server.product,
        server=live_server.url,
        api_key=live_server.keys["camera"],
        fps=10,
        limit=20,
        loop=True,
        camera_id=f"cam-{uuid.uuid4().hex[:8]}",
        show_progress=True,  # the live line must not disturb the run
    )
    assert summary.read == 20 and summary.answered + summary.dropped + summary.errors == 20
    # 20 frames due every 0.1 s: the last is due at 1.9 s. Generous upper bound: the machine is shared.
    assert 1.5 <= summary.duration_s <= 4.0


class SlowServer:
    """A stand-in inspection server that answers after `delay` seconds and records its peak concurrency."""

    def __init__(self) -> None:
        self.delay, self.active, self.peak = 0.3, 0, 0
        self.app = FastAPI()
        self.app.post("/v1/inspect/{product}")(self.inspect)

    async def inspect(self, product: str) -> dict[str, object]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return {
            "inspection_id": str(uuid.uuid4()),
            "product": product,
            "verdict": "pass",
            "defect_probability": 0.1,
            "defect_type": None,
            "threshold": 0.5,
            "model_version": 1,
            "latency_ms": 1000 * self.delay,
        }


@pytest.fixture(scope="module")
def slow_server() -> Iterator[tuple[str, SlowServer]]:
    stub, port = SlowServer(), free_port()
    server, thread = _start(stub.app, port)
    yield f"http://127.0.0.1:{port}", stub
    server.should_exit = True
    thread.join(timeout=30)


def test_a_slow_server_makes_the_client_drop_frames_not_queue_them(
    slow_server: tuple[str, SlowServer], frames_dir: Path
) -> None:
    url, stub = slow_server
    stub.delay, stub.peak = 0.3, 0
    summary = stream_frames(
        frames_dir, product="widget", server=url, api_key="k", fps=40, concurrency=2, limit=40, loop=True,
        show_progress=False,
    )  # fmt: skip
    assert summary.read == 40
    assert summary.dropped > 0 and summary.sent + summary.dropped == summary.read
    assert summary.max_in_flight <= 2 and stub.peak <= 2
    assert summary.answered == summary.sent and summary.errors == 0
    assert summary.server_latency_ms_p50 == pytest.approx(300)
    assert summary.duration_s < 2.5  # 40 frames due over 1 s, plus the last answers: no backlog was worked off


def test_loop_restarts_the_folder_and_errors_are_counted_not_fatal(
    slow_server: tuple[str, SlowServer], frames_dir: Path, tmp_path: Path
) -> None:
    url, stub = slow_server
    stub.delay = 0.0
    for name in ("a.png", "b.jpg", "c.bmp"):
        shutil.copy(next(frames_dir.rglob("*.png")), tmp_path / name)  # the stub never decodes
    summary = stream_frames(
        tmp_path,
        product="widget",
        server=url,
        api_key="k",
        fps=50,
        limit=7,
        loop=True,
        show_progress=False,
        keep_results=True,
    )
    assert summary.read == 7
    assert [r.frame_id for r in summary.results] == ["a.png", "b.jpg", "c.bmp", "a.png", "b.jpg", "c.bmp", "a.png"]
    unreachable = stream_frames(
        tmp_path, product="widget", server=f"http://127.0.0.1:{free_port()}", api_key="k", fps=50,
        show_progress=False,
    )  # fmt: skip
    assert unreachable.sent == unreachable.errors == 3 and unreachable.answered == 0
    assert unreachable.errors_by_status == {"ConnectError": 3}


def test_a_wrong_key_is_counted_by_status(live_server: LiveServer, frames_dir: Path) -> None:
    summary = stream_frames(
        frames_dir, product=live_server.product, server=live_server.url, api_key="wrong", fps=50, limit=3,
        show_progress=False,
    )  # fmt: skip
    assert summary.errors_by_status == {"401": 3} and "API key" in summary.error_examples["401"]
    args = ["camera", "--product", live_server.product, "--source", str(frames_dir), "--fps", "50", "--limit", "2"]
    result = CliRunner().invoke(cli_app, [*args, "--server", live_server.url, "--api-key", "wrong"])
    assert result.exit_code == 1  # nothing answered: a script must not mistake this run for a success


def test_cli_writes_the_summary_json(live_server: LiveServer, frames_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    args = ["camera", "--product", live_server.product, "--source", str(frames_dir), "--fps", "25"]
    args += ["--server", live_server.url, "--limit", "5", "--concurrency", "8", "--json", str(out)]
    result = CliRunner().invoke(cli_app, args, env={"INSPECTION_API_KEY": live_server.keys["camera"]})
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["read"] == 5 and summary["answered"] + summary["dropped"] == 5
    assert "answered (2xx)" in result.output


@pytest.mark.parametrize(
    ("kind", "message"), [("missing", "does not exist"), ("empty", "no image files"), ("bad-video", "video")]
)
def test_cli_refuses_unusable_sources_clearly(kind: str, message: str, tmp_path: Path) -> None:
    source = {"missing": tmp_path / "missing", "empty": tmp_path, "bad-video": tmp_path / "bad.avi"}[kind]
    if kind == "bad-video":
        source.write_bytes(b"not a video")
    args = ["camera", "--product", "widget", "--source", str(source), "--fps", "5", "--api-key", "k"]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, InspectionError) and message in str(result.exception)


def test_cli_refuses_to_run_without_a_key(frames_dir: Path) -> None:
    args = ["camera", "--product", "widget", "--source", str(frames_dir), "--fps", "5"]
    result = CliRunner().invoke(cli_app, args, env={"INSPECTION_API_KEY": ""})
    assert result.exit_code != 0 and "API key" in str(result.exception)
