"""End-to-end server load, side by side in one run on this machine: the served ONNX file alone, `inspection serve`,
a 20-line FastAPI + ONNX Runtime wrapper of the same file (benchmarks/simple_ort_server.py) and the naive
FastAPI + PyTorch server, each a separate process, all fed 640x480 JPEG frames over HTTP on loopback by the same
lean keep-alive client.

These machines drift by tens of percent within minutes, so the model alone, the server and the simple wrapper are
measured in alternating rounds and their ratios come from the same rounds. Every frame the server answers is
counted against the rows it stored (each phase sends its own line_id).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from rich.console import Console
from sqlalchemy import func, select

from benchmarks.http_load import OfferedResult, SaturationResult, build_requests, offered_rate, run, saturation
from datasets.layout import scan_dataset
from datasets.splits import product_splits, split_records
from inspection.product_config import load_product_config
from inspection.settings import Settings
from inspection.storage.api_keys import create_api_key
from inspection.storage.database import open_database
from inspection.storage.schema import Inspection
from models.artifacts import EXPORT_REPORT_FILE, FP32_FILE, MODEL_FILE, onnx_dir
from models.onnx_runtime import OnnxScorer
from models.registry import champion
from models.serving_choice import champion_model
from serving.engine import engine_runners
from serving.frames import frame_to_inputs

OFFERED_FPS = (25, 50, 100)
SECONDS_PER_RATE = 8.0
SATURATION_SECONDS = 8.0
WARM_UP_SECONDS = 2.0  # sessions, thread pools and first batches, before anything is counted
SATURATION_CLIENTS = 8  # keep-alive connections, each sending its next frame when the last is answered
ROUNDS = 2  # alternations of model alone / server / simple wrapper
MODEL_ONLY_BATCH = 8
MODEL_ONLY_THREADS = 2
LATENCY_CALLS = 200
# The ISA extensions that decide ONNX Runtime's speed, fp32 (AVX2, AVX-512) and INT8 (VNNI, AMX) alike.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
REPO = Path(__file__).resolve().parents[1]
STARTED_LINE = b"Application startup complete"  # what uvicorn logs when a (worker) process's lifespan is done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_flags() -> dict[str, float]:
    """The CPU's ISA extensions that matter here, as 0/1 figures (`cpu_avx2`, ...), and its core count."""
    present: set[str] = set()
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                break
    figures = {f"cpu_{flag}": float(flag in present) for flag in ISA_FLAGS}
    figures["cpu_cores"] = float(os.cpu_count() or 1)
    return figures


def camera_frames(settings: Settings, product: str, n: int = 64) -> list[bytes]:
    """n held-out images (the frozen test split, drawn evenly in a fixed shuffled order so good and defective
    parts come in the split's own proportions) blown up to 640x480 and JPEG-encoded as a camera would send them."""
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    config = load_product_config(settings.configs_dir, product)
    test = sorted(split_records(records, product_splits(root, records, config.split))["test"], key=lambda r: r.relpath)
    order = np.random.default_rng(0).permutation(len(test))[:n]
    frames = []
    for index in order:
        image = cv2.resize(cv2.imread(str(test[index].path), cv2.IMREAD_GRAYSCALE), (640, 480))
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def _log_tail(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def start_process(
    command: list[str], env: dict[str, str], port: int, cwd: Path = REPO, started_lines: int = 0
) -> subprocess.Popen[bytes]:
    """Start a server and return once it accepts connections and, given `started_lines`, once that many of its
    processes have logged the end of their startup (the workers of `inspection serve --workers N`)."""
    # stderr to a file, not a pipe: a pipe nobody reads blocks the server once 64 KB of log lines are written.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server process, closed with it
    # Its own session (process group): stop_process() can then reap worker processes a dead master left behind.
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {_log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            time.sleep(0.2)
            continue
        log.seek(0)
        if log.read().count(STARTED_LINE) >= started_lines:
            return process
        time.sleep(0.2)
    kill_process_group(process)
    raise RuntimeError(f"{command} did not start on {port}: {_log_tail(log)}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful drain for the inspection server), then wait; then SIGKILL whatever is left of its process
    group (workers of `inspection serve --workers N` whose master died without stopping them)."""
    process.terminate()
    try:
        process.wait(timeout=60)
    finally:
        kill_process_group(process)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of `process`'s group (start_process() made it a group leader), then reap it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextmanager
def running(command: list[str], env: dict[str, str], started_lines: int = 0) -> Iterator[int]:
    """A server process on a free port for the block's duration; yields the port."""
    port = free_port()
    process = start_process([*command, str(port)], env, port, started_lines=started_lines)
    try:
        yield port
    finally:
        stop_process(process)


def _saturate(url: str, requests: list[bytes]) -> tuple[SaturationResult, int]:
    """The measured saturation run, and every frame answered 200 including the warm-up's."""
    warm_up = run(lambda: saturation(url, requests, WARM_UP_SECONDS, SATURATION_CLIENTS))
    result = run(lambda: saturation(url, requests, SATURATION_SECONDS, SATURATION_CLIENTS))
    assert isinstance(warm_up, SaturationResult) and isinstance(result, SaturationResult)
    return result, warm_up.answered + result.answered


class _RowCheck:
    """Each load phase sends its own line_id; every frame answered 200 must be a stored row of it."""

    def __init__(self, settings: Settings) -> None:
        self.sessions = open_database(settings.resolved_database_url)
        self.answered = 0
        self.stored = 0

    def line(self) -> str:
        return f"bench-{uuid.uuid4().hex[:12]}"

    def count(self, line_id: str, answered: int) -> None:
        self.answered += answered
        # An exact count: the list endpoint's total stops at TOTAL_CAP.
        with self.sessions() as session:
            self.stored += session.scalar(select(func.count()).where(Inspection.line_id == line_id)) or 0


def run_load(settings: Settings, product: str) -> dict[str, float]:
    """Figures: the CPU's flags; saturation of the model alone, the server and the simple wrapper in alternating
    rounds, and their ratios; latency at offered rates and at half the server's saturation; the naive baseline;
    INT8's speed-up and its gate's decision; answered frames against stored rows."""
    console = Console()
    figures = cpu_flags()
    console.print("CPU: " + ", ".join(f"{name.removeprefix('cpu_')} {int(v)}" for name, v in figures.items()))
    frames = camera_frames(settings, product)
    key = create_api_key(open_database(settings.resolved_database_url), "camera", "bench camera")
    headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    env = {**os.environ, "INSPECTION_HOME": str(settings.home), "INSPECTION_CONFIGS_DIR": str(settings.configs_dir)}
    served = champion_model(settings, product)
    info = champion(settings, product)
    assert served is not None and info is not None, f"{product} has no exported champion"
    workers = int(env.get("INSPECTION_WORKERS") or _default_workers())
    server_command = [sys.executable, "-m", "cli.main", "serve", "--port"]
    simple_command = [sys.executable, "-m", "benchmarks.simple_ort_server", str(served.path)]
    rows = _RowCheck(settings)

    def server_url(port: int, line_id: str) -> str:
        return f"http://127.0.0.1:{port}/v1/inspect/{product}?line_id={line_id}"

    def server_saturation() -> float:
        with running(server_command, env, started_lines=workers) as port:
            line_id = rows.line()
            url = server_url(port, line_id)
            result, answered = _saturate(url, build_requests(url, headers, frames))
        rows.count(line_id, answered)
        return result.fps

    def simple_saturation() -> float:
        with running(simple_command, env) as port:
            url = f"http://127.0.0.1:{port}/v1/inspect/{product}"
            return _saturate(url, build_requests(url, headers, frames))[0].fps

    measured: dict[str, list[float]] = {"model_only": [], "decode_and_model": [], "server": [], "simple_ort": []}
    for round_number in range(1, ROUNDS + 1):
        measured["model_only"].append(_model_only_fps(served.path, frames))
        measured["decode_and_model"].append(decode_and_model_fps(served.path, frames, settings, SATURATION_SECONDS))
        measured["server"].append(server_saturation())
        measured["simple_ort"].append(simple_saturation())
        console.print(f"round {round_number}: " + ", ".join(f"{k} {v[-1]:.1f} fps" for k, v in measured.items()))
    for name, values in measured.items():
        figures[f"{name}_fps" if name != "server" else "server_fps_saturation"] = round(float(np.mean(values)), 1)
    figures["server_workers"] = float(workers)
    figures["server_vs_model_only"] = round(figures["server_fps_saturation"] / figures["model_only_fps"], 2)
    figures["server_vs_simple_ort"] = round(figures["server_fps_saturation"] / figures["simple_ort_fps"], 2)
    # What a server doing nothing but decode and score (no HTTP, row or archive) could reach against the wrapper:
    # when this is below the goal, no amount of work on the server's own overhead reaches it on this machine.
    figures["ceiling_vs_simple_ort"] = round(figures["decode_and_model_fps"] / figures["simple_ort_fps"], 2)
    figures["server_vs_ceiling"] = round(figures["server_fps_saturation"] / figures["decode_and_model_fps"], 2)

    half = figures["server_fps_saturation"] / 2
    with running(server_command, env, started_lines=workers) as port:
        for name, fps in [*((str(rate), float(rate)) for rate in OFFERED_FPS), ("half_saturation", half)]:
            line_id = rows.line()
            url = server_url(port, line_id)
            requests = build_requests(url, headers, frames)
            warm_up = run(lambda url=url, requests=requests: saturation(url, requests, WARM_UP_SECONDS, 2))
            result = run(lambda url=url, requests=requests, fps=fps: offered_rate(url, requests, fps, SECONDS_PER_RATE))
            assert isinstance(warm_up, SaturationResult) and isinstance(result, OfferedResult)
            rows.count(line_id, warm_up.answered + result.answered)
            suffix = f"{name}fps" if name != "half_saturation" else name
            figures[f"server_fps_at_{suffix}"] = round(result.fps, 1)
            figures[f"p50_ms_at_{suffix}"] = round(result.p50_ms, 1)
            figures[f"p99_ms_at_{suffix}"] = round(result.p99_ms, 1)
            figures[f"errors_at_{suffix}"] = result.errors
    figures["p99_vs_p50_at_half_saturation"] = round(
        figures["p99_ms_at_half_saturation"] / figures["p50_ms_at_half_saturation"], 2
    )

    naive_command = [sys.executable, "-m", "benchmarks.naive_server", str(info.artifacts / MODEL_FILE)]
    with running(naive_command, env) as port:
        url = f"http://127.0.0.1:{port}/v1/inspect/{product}"
        figures["naive_fps_saturation"] = round(_saturate(url, build_requests(url, headers, frames))[0].fps, 1)
    figures["server_vs_naive"] = round(figures["server_fps_saturation"] / figures["naive_fps_saturation"], 2)

    figures.update(_int8_figures(served.path, info.artifacts, frames))
    figures["server_frames_answered"] = float(rows.answered)
    figures["server_rows_stored"] = float(rows.stored)
    if rows.stored != rows.answered:
        console.print(f"[bold red]{rows.answered} frames answered but {rows.stored} rows stored[/]")
    return figures


def _default_workers() -> int:
    from cli.main import DEFAULT_WORKERS

    return DEFAULT_WORKERS


def _model_only_fps(path: Path, frames: list[bytes]) -> float:
    """Images/s of the ONNX file alone: ORT with MODEL_ONLY_THREADS threads (ORT's own spin-waiting, as a plain
    session has it), already preprocessed frames in batches of MODEL_ONLY_BATCH, no HTTP, decoding or database."""
    spec = OnnxScorer(path, threads=1).spec
    inputs = np.stack([frame_to_inputs(frame, spec, 10**8) for frame in frames[:MODEL_ONLY_BATCH]])
    return model_fps(path, inputs, MODEL_ONLY_THREADS, 1, SATURATION_SECONDS, spinning=True)


def decode_and_model_fps(path: Path, frames: list[bytes], settings: Settings, seconds: float) -> float:
    """Frames/s of the server's own work per frame minus HTTP, the row and the archive: the JPEG decoded and
    preprocessed (`frame_to_inputs`) and scored alone, in the engine's arrangement (its runner threads side by side
    on one session with its intra-op threads): the ceiling of any server of this file in that arrangement."""
    scorer = OnnxScorer(path, threads=settings.ort_threads or None, spinning=settings.ort_spinning)
    runners = engine_runners(settings.engine_runners, settings.ort_threads)

    def decode_and_score(index: int) -> int:
        inputs = frame_to_inputs(frames[index % len(frames)], scorer.spec, settings.max_pixels)
        scorer.score_batch_with_maps(inputs[None])
        return 1

    return _side_by_side_fps(decode_and_score, runners, seconds)


def model_fps(path: Path, inputs: np.ndarray, threads: int, runners: int, seconds: float, spinning: bool) -> float:
    """Frames/s of `runners` threads each scoring `inputs` (one batch) again and again on one session with
    `threads` intra-op threads; no HTTP, decoding or database."""
    scorer = OnnxScorer(path, threads=threads, spinning=spinning)

    def score(_: int) -> int:
        scorer.score_batch_with_maps(inputs)
        return len(inputs)

    return _side_by_side_fps(score, runners, seconds)


def _side_by_side_fps(step: Callable[[int], int], runners: int, seconds: float) -> float:
    """Frames/s of `runners` threads calling `step(i)` (i = 0, 1, 2, ... across them; returns the frames it did)
    again and again for `seconds`, after one untimed call (ORT's first run plans and allocates)."""
    step(0)
    counts = [0] * runners
    stop = time.perf_counter() + seconds

    def loop(runner: int) -> None:
        index = runner
        while time.perf_counter() < stop:
            counts[runner] += step(index)
            index += runners

    threads = [threading.Thread(target=loop, args=(runner,)) for runner in range(runners)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def _int8_figures(served: Path, artifacts: Path, frames: list[bytes]) -> dict[str, float]:
    """INT8's gate decision (from the export report) and its batch-1 speed-up over fp32: timed now, interleaved,
    when the INT8 file exists (it was accepted), under `*_served` names; else the export's own timing of the
    refused candidate, under `*_at_export` names. Neither overwrites the `int8_vs_fp32_bs1` of `inference_speed`
    in the same run: the export's are single timings taken one after the other (on 2026-12-06 they read 3.07
    where the interleaved figure was 2.23), and the served file's are of another quantization, the export's."""
    report = json.loads((onnx_dir(artifacts) / EXPORT_REPORT_FILE).read_text())
    decision = report.get("int8")
    figures = {"served_model_int8": float(served.name.endswith(".int8.onnx"))}
    if decision is None:
        return figures  # exported without --int8
    figures["int8_accepted"] = float(bool(decision["accepted"]))
    fp32_path = onnx_dir(artifacts) / FP32_FILE
    int8_path = report.get("int8_path")
    if int8_path and Path(int8_path).is_file():
        fp32, int8 = OnnxScorer(fp32_path), OnnxScorer(Path(int8_path))
        single = frame_to_inputs(frames[0], fp32.spec, 10**8)[None]
        timings: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(3):  # blocks alternated, so drift hits both
            for name, scorer in (("fp32", fp32), ("int8", int8)):
                scorer.score_batch(single)
                for _ in range(LATENCY_CALLS // 3):
                    began = time.perf_counter()
                    scorer.score_batch(single)
                    timings[name].append(time.perf_counter() - began)
        fp32_ms, int8_ms = (1000 * float(np.median(timings[name])) for name in ("fp32", "int8"))
        suffix = "_served"
    else:
        fp32_ms, int8_ms = report["latency_ms_bs1"]["fp32"], report["latency_ms_bs1"]["int8"]
        suffix = "_at_export"
    figures[f"fp32_latency_ms_bs1{suffix}"] = round(fp32_ms, 2)
    figures[f"int8_latency_ms_bs1{suffix}"] = round(int8_ms, 2)
    figures[f"int8_vs_fp32_bs1{suffix}"] = round(fp32_ms / int8_ms, 2)
    return figures
