"""Small defects on large frames: whole-frame scoring against tiles, trained and judged in one run.

On the synthetic large-frame product (2048 px gray frames, defects of at most 16 px, masks) the same kind is
trained twice, resized whole (today's default) and on `tiling: auto`; both are judged per frame on the frozen test
split. The tiled model is then exported and served on 2448x2048 JPEG frames, in process and by the real HTTP
server under 1 and 2 cameras with each way of splitting a frame's tiles across the runners, every design against
ONNX Runtime alone on the same tile batches measured right before it. INSPECTION_BENCH_TILING_FRAMES sets the frame
count.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from benchmarks.context import BenchContext
from datasets.synth_large import make_large_frame
from inspection.errors import ImageTooLargeError
from inspection.metrics import auroc
from inspection.preprocessing import TiledFrame
from inspection.progress import console
from inspection.settings import Settings
from models.onnx_runtime import OnnxScorer
from serving.engine import SPLIT_MODES, InferenceEngine
from serving.frames import frame_size, frame_to_inputs
from training.export_pipeline import export_product
from training.pipeline import train_product

FRAMES = int(os.environ.get("INSPECTION_BENCH_TILING_FRAMES", "200"))
SIZE, MAX_DEFECT_PX = 2048, 16
SERVED_FRAMES = 12
ROUNDS = 3  # the served designs and ORT alone interleaved, a third of the frames a round
BUDGET = 0.05
KIND = "classifier"
COMMON = f"kind: {KIND}\ntarget_false_detection_rate: {BUDGET}\ncolor_mode: gray\n"


def _settings(context: BenchContext) -> Settings:
    from datasets.synth_large import generate_large_frame_product

    root = context.workdir / "tiling"
    configs = root / "configs" / "products"
    configs.mkdir(parents=True, exist_ok=True)
    (root / "configs" / "default.yaml").write_text((context.configs_dir / "default.yaml").read_text())
    (configs / "large-whole.yaml").write_text(COMMON)
    (configs / "large-tiled.yaml").write_text(COMMON + "tiling: auto\n")
    settings = Settings(home=root / "var", configs_dir=root / "configs", device="cpu")
    generate_large_frame_product(
        settings.dataset_dir("large-whole"), FRAMES, seed=11, size=SIZE, max_defect_px=MAX_DEFECT_PX
    )
    settings.dataset_dir("large-tiled").parent.mkdir(parents=True, exist_ok=True)
    settings.dataset_dir("large-tiled").symlink_to(settings.dataset_dir("large-whole"), target_is_directory=True)
    return settings


def _miss_rate_at_budget(labels: np.ndarray, scores: np.ndarray, budget: float) -> float:
    """Test miss rate at the lowest threshold whose test false-detection rate is within the budget."""
    good = np.sort(scores[labels == 0])
    allowed = int(np.floor(budget * len(good)))
    threshold = good[len(good) - allowed - 1] if allowed < len(good) else -np.inf
    return float(np.mean(scores[labels == 1] <= threshold))


def _jpeg_frames(count: int) -> list[bytes]:
    frames = []
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        frame, _ = make_large_frame(rng, 2448, "spot" if i % 3 == 0 else "good", MAX_DEFECT_PX)
        frames.append(cv2.imencode(".jpg", frame[:2048], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return frames


class _ModelOnly:
    """ONNX Runtime alone on frames' tile batches, both ways of using the cores, sessions made and warmed once."""

    def __init__(self, path: Path, warm_up: np.ndarray) -> None:
        self.two = OnnxScorer(path)  # one run at a time, an intra-op thread per core (spinning: fastest alone)
        self.one = OnnxScorer(path, threads=1)  # two runs side by side on single-threaded sessions, a frame each
        self.two.score_batch_with_maps(warm_up)
        self.one.score_batch_with_maps(warm_up)

    def seconds(self, tiled: list[TiledFrame]) -> dict[str, float]:
        """Seconds to score `tiled` each way."""
        started = time.perf_counter()
        for inputs in tiled:
            self.two.score_batch_with_maps(inputs.inputs)
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda inputs: self.one.score_batch_with_maps(inputs.inputs), tiled))
        side_by_side = time.perf_counter() - started
        return {"2-thread runs one by one": sequential, "two 1-thread runs side by side": side_by_side}


async def _in_process(path: Path, frames: list[bytes]) -> tuple[list[float], float]:
    """The earlier measurement: decode, tiles and the engine in process, one frame after another, one runner on a
    2-thread session (decode never overlaps scoring). Latencies and seconds."""
    scorer = OnnxScorer(path)
    engine = InferenceEngine(scorer, model_version=1, runners=1)
    latencies = []
    try:
        await engine.submit(frame_to_inputs(frames[0], scorer.spec, 50_000_000))  # warm-up
        started = time.perf_counter()
        for data in frames:
            t0 = time.perf_counter()
            inputs = await asyncio.to_thread(frame_to_inputs, data, scorer.spec, 50_000_000)
            await engine.submit(inputs)
            latencies.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - started
    finally:
        await engine.close()
    return latencies, seconds


def _http(
    settings: Settings,
    product: str,
    frames: list[bytes],
    designs: list[tuple[int, str]],
    between: Callable[[list[int]], None],
    baseline: Callable[[str, list[int]], None],
) -> tuple[dict, str]:
    """The real server (its defaults: a single-threaded session, a runner per core) on loopback, each frame posted
    by `clients` cameras at once; per design (clients, split_tiles): latencies, seconds, answers stored; and the
    server's default split.
    The frames go in ROUNDS slices, every design in each, `between(slice)` first, and `baseline(design, slice)`
    (ORT alone on the same frames) right before each design: the cores are shared and the load drifts, so each
    design is compared with ORT alone measured seconds before it, not minutes."""
    import httpx
    import uvicorn

    from inspection.storage.api_keys import create_api_key
    from inspection.storage.database import open_database
    from inspection.storage.inspections import InspectionFilter, list_inspections
    from serving.app import create_app

    sessions = open_database(settings.resolved_database_url)
    key = create_api_key(sessions, "camera", "tiling bench")
    app = create_app(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    url, headers = f"http://127.0.0.1:{port}/v1/inspect/{product}", {"X-API-Key": key, "Content-Type": "image/jpeg"}
    results: dict[str, dict] = {}
    try:
        engine = app.state.serving.engines[product]
        default = engine.split_tiles
        with httpx.Client(timeout=120) as warm:
            assert warm.post(url, content=frames[0], headers=headers).status_code == 200
        run_tag = uuid.uuid4().hex[:6]
        for round_ in range(ROUNDS):
            chosen = list(range(round_, len(frames), ROUNDS))
            between(chosen)
            for clients, split in designs:
                name = _design_name(clients, split, split == default)
                engine.split_tiles = split
                line = f"bench-{run_tag}-{name}".replace(" ", "-").replace(",", "")[:60]
                run = results.setdefault(name, {"latencies": [], "seconds": 0.0, "answered": 0, "stored": 0})
                part = [frames[i] for i in chosen]
                baseline(name, chosen)

                def camera(
                    index: int, line: str = line, clients: int = clients, part: list[bytes] = part, run: dict = run
                ) -> int:
                    answered = 0
                    with httpx.Client(timeout=120) as client:
                        for data in part[index::clients]:
                            t0 = time.perf_counter()
                            response = client.post(url, content=data, headers=headers, params={"line_id": line})
                            run["latencies"].append(time.perf_counter() - t0)
                            answered += response.status_code == 200
                    return answered

                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    run["answered"] += sum(pool.map(camera, range(clients)))
                run["seconds"] += time.perf_counter() - started
        for name in results:
            line = f"bench-{run_tag}-{name}".replace(" ", "-").replace(",", "")[:60]
            for _ in range(100):  # rows are written behind the answers
                stored = list_inspections(sessions, InspectionFilter(product=product, line_id=line), limit=1)[1]
                if stored >= results[name]["answered"]:
                    break
                time.sleep(0.1)
            results[name]["stored"] = stored
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    return results, default


def _design_name(clients: int, split: str, default: bool) -> str:
    cameras = f"{clients} camera{'s' if clients > 1 else ''}"
    return f"http {cameras}, split {split}" + (" (default)" if default else "")


# (cameras posting at once, how a frame's tiles are split across the runners): every mode under 1 and 2 cameras; the
# server's default mode under the line's 2 concurrent cameras is the headline
HTTP_DESIGNS = [(clients, split) for clients in (1, 2) for split in SPLIT_MODES]
HEADLINE_CAMERAS = 2


def serving_figures(settings: Settings, product: str, path: Path) -> dict[str, float]:
    """Served 2448x2048 figures of an exported tiled model: every design in one run against ORT alone."""
    spec = OnnxScorer(path, threads=1).spec
    frames = _jpeg_frames(SERVED_FRAMES)
    tiled = [frame_to_inputs(data, spec, 50_000_000) for data in frames]
    assert all(isinstance(t, TiledFrame) for t in tiled)
    tiles = sum(len(t.boxes) for t in tiled)  # type: ignore[union-attr]
    model_only = _ModelOnly(path, tiled[0].inputs)  # type: ignore[union-attr]
    # per design, ORT alone's seconds each way on the same frames, measured right before the design
    model: dict[str, dict[str, float]] = {}
    in_process = "in process, one by one, 1 runner"
    runs: dict[str, dict] = {in_process: {"latencies": [], "seconds": 0.0}}

    def baseline(name: str, chosen: list[int]) -> None:
        for way, secs in model_only.seconds([tiled[i] for i in chosen]).items():  # type: ignore[misc]
            per_way = model.setdefault(name, {})
            per_way[way] = per_way.get(way, 0.0) + secs

    def between(chosen: list[int]) -> None:
        baseline(in_process, chosen)
        latencies, seconds = asyncio.run(_in_process(path, [frames[i] for i in chosen]))
        runs[in_process]["latencies"] += latencies
        runs[in_process]["seconds"] += seconds

    served, default = _http(settings, product, frames, HTTP_DESIGNS, between, baseline)
    runs.update(served)
    console.print(f"served {SERVED_FRAMES} 2448x2048 frames of {tiles // SERVED_FRAMES} tiles each:")
    for name, run in runs.items():
        stored = f", {run['stored']}/{run['answered']} answers stored" if "stored" in run else ""
        ways = ", ".join(f"{way} {tiles / secs:.1f}" for way, secs in model[name].items())
        console.print(
            f"  {name}: {tiles / run['seconds']:.1f} tiles/s, ratio {min(model[name].values()) / run['seconds']:.3f}"
            f" (ORT alone right before it, tiles/s: {ways}), median {1000 * statistics.median(run['latencies']):.0f}"
            f" ms{stored}"
        )
    headline_name = _design_name(HEADLINE_CAMERAS, default, True)
    model_seconds = min(model[headline_name].values())  # ORT alone's better way of using the cores
    headline = runs[headline_name]
    megapixels = 2448 * 2048 / 1e6
    figures = {
        "tiled_served_fps_2448x2048": round(SERVED_FRAMES / headline["seconds"], 3),
        "tiled_served_p99_ms_2448x2048": round(1000 * float(np.percentile(headline["latencies"], 99)), 1),
        "tiled_served_median_ms_2448x2048": round(1000 * statistics.median(headline["latencies"]), 1),
        "tiled_tiles_per_frame_2448x2048": tiles / SERVED_FRAMES,
        "tiled_server_tiles_per_s": round(tiles / headline["seconds"], 1),
        "tiled_model_only_tiles_per_s": round(tiles / model_seconds, 1),
        "tiled_server_vs_model_only": round(model_seconds / headline["seconds"], 3),
        "tiled_server_answers_stored": float(
            all(r["stored"] == r["answered"] == SERVED_FRAMES for r in runs.values() if "stored" in r)
        ),
        "tiled_ms_per_megapixel": round(1000 * headline["seconds"] / SERVED_FRAMES / megapixels, 1),
        "tiled_50mp_header_refused": float(_refused_50mp()),
    }
    for name, run in runs.items():
        key = "_".join("".join(c if c.isalnum() else " " for c in name).split())
        figures[f"tiled_ratio_{key}"] = round(min(model[name].values()) / run["seconds"], 3)
    return figures


def run(context: BenchContext) -> dict[str, float]:
    """Figures: AUROC and miss rate at 5 % false detections, whole frame vs tiles; served 2448x2048 throughput."""
    settings = _settings(context)
    figures: dict[str, float] = {"tiling_frames": FRAMES, "tiling_frame_px": SIZE}
    for name in ("whole", "tiled"):
        outcome = train_product(settings, f"large-{name}")
        assert outcome.test_labels is not None and outcome.test_scores is not None
        test = outcome.report["test"]
        figures[f"large_{name}_test_auroc"] = round(float(auroc(outcome.test_labels, outcome.test_scores)), 4)
        figures[f"large_{name}_miss_rate_at_5pct_fd"] = round(
            _miss_rate_at_budget(outcome.test_labels, outcome.test_scores, BUDGET), 4
        )
        figures[f"large_{name}_calibrated_miss_rate"] = test["miss_rate"]
        figures[f"large_{name}_calibrated_false_detection_rate"] = test["false_detection_rate"]
        if test.get("pixel_auroc") is not None:
            figures[f"large_{name}_pixel_auroc"] = test["pixel_auroc"]
        figures[f"large_{name}_train_seconds"] = round(outcome.seconds, 1)
        if name == "tiled":
            figures["large_tiled_tile_px"] = outcome.report["tiling"]["geometry"]["tile"]
    console.print(f"training {FRAMES} {SIZE}-px frames on tiles took {figures['large_tiled_train_seconds']} s")

    figures.update(serving_figures(settings, "large-tiled", export_product(settings, "large-tiled").fp32_path))
    return figures


def _refused_50mp() -> bool:
    """A frame whose header declares over 50 megapixels is refused before a pixel is decoded."""
    header = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    # The PNG's IHDR width and height (bytes 16-24) rewritten to 8000x7000 = 56 MP, its CRC (29-33) recomputed;
    # the pixels are never read.
    ihdr = header[16:29]
    ihdr = (8000).to_bytes(4, "big") + (7000).to_bytes(4, "big") + ihdr[8:]
    crc = zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big")
    data = header[:16] + ihdr + crc + header[33:]
    try:
        frame_size(data, 50_000_000)
    except ImageTooLargeError:
        return True
    return False
