"""End-to-end server load: 640x480 JPEG frames over HTTP on loopback at offered rates and at saturation, next to
the naive baseline (FastAPI + PyTorch per request), both run as separate processes on this machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from datasets.layout import scan_dataset
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from models.checkpoint import MODEL_FILE
from models.registry import champion

OFFERED_FPS = (25, 50, 100)
SECONDS_PER_RATE = 8.0
SATURATION_SECONDS = 8.0
SATURATION_CLIENTS = 16
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _frames(settings: Settings, product: str, n: int = 64) -> list[bytes]:
    """Dataset images blown up to 640x480 camera frames, JPEG-encoded as a camera would send them."""
    records = sorted(scan_dataset(settings.dataset_dir(product)), key=lambda r: r.relpath)[:n]
    frames = []
    for record in records:
        image = cv2.resize(cv2.imread(str(record.path), cv2.IMREAD_GRAYSCALE), (640, 480))
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def _start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                output = process.stderr.read().decode()[-2000:] if process.stderr else ""
                raise RuntimeError(f"{command} exited: {output}") from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start listening on {port}")


async def _offered(
    url: str, headers: dict[str, str], frames: list[bytes], fps: float, seconds: float
) -> dict[str, float]:
    """Open loop: send at a fixed rate regardless of answers, as a camera does; latency of each answer."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one(frame: bytes) -> None:
            nonlocal errors
            began = time.perf_counter()
            response = await client.post(url, content=frame, headers=headers)
            if response.status_code == 200:
                latencies.append(1000 * (time.perf_counter() - began))
            else:
                errors += 1

        tasks, start, count = [], time.perf_counter(), int(fps * seconds)
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / fps - time.perf_counter()))
            tasks.append(asyncio.create_task(one(frames[i % len(frames)])))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "fps": len(latencies) / elapsed,
        "p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        "errors": errors,
    }


async def _saturation(url: str, headers: dict[str, str], frames: list[bytes], seconds: float) -> float:
    """Closed loop: many clients each sending the next frame as soon as the last is answered; answers/s."""
    answered = 0
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=SATURATION_CLIENTS)) as client:

        async def worker(offset: int) -> None:
            nonlocal answered
            i = offset
            while time.perf_counter() < stop:
                response = await client.post(url, content=frames[i % len(frames)], headers=headers)
                answered += response.status_code == 200
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(SATURATION_CLIENTS)))
        return answered / (time.perf_counter() - began)


def run_load(settings: Settings, product: str) -> dict[str, float]:
    """Figures: fps and p50/p99 at each offered rate, saturation fps, and the naive baseline's saturation."""
    frames = _frames(settings, product)
    key = create_api_key(open_database(settings.resolved_database_url), "camera", "bench camera")
    headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    env = {**os.environ, "INSPECTION_HOME": str(settings.home), "INSPECTION_CONFIGS_DIR": str(settings.configs_dir)}
    figures: dict[str, float] = {}
    port = _free_port()
    server = _start([sys.executable, "-m", "inspection.cli", "serve", "--port", str(port)], env, port)
    url = f"http://127.0.0.1:{port}/v1/inspect/{product}"
    try:
        for fps in OFFERED_FPS:
            result = asyncio.run(_offered(url, headers, frames, fps, SECONDS_PER_RATE))
            figures[f"server_fps_at_{fps}fps"] = round(result["fps"], 1)
            figures[f"p50_ms_at_{fps}fps"] = round(result["p50"], 1)
            figures[f"p99_ms_at_{fps}fps"] = round(result["p99"], 1)
            figures[f"errors_at_{fps}fps"] = result["errors"]
        figures["server_fps_saturation"] = round(asyncio.run(_saturation(url, headers, frames, SATURATION_SECONDS)), 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    info = champion(settings, product)
    assert info is not None
    port = _free_port()
    naive = _start(
        [sys.executable, "-m", "benchmarks.naive_server", str(info.artifacts / MODEL_FILE), str(port)], env, port
    )
    try:
        naive_url = f"http://127.0.0.1:{port}/v1/inspect/{product}"
        figures["naive_fps_saturation"] = round(
            asyncio.run(_saturation(naive_url, headers, frames, SATURATION_SECONDS)), 1
        )
    finally:
        naive.terminate()
        naive.wait(timeout=30)
    figures["server_vs_naive"] = round(figures["server_fps_saturation"] / figures["naive_fps_saturation"], 2)
    return figures
