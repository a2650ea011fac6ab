"""Small defects on large frames: whole-frame scoring against tiles, trained and judged in one run.

On the synthetic large-frame product (2048 px gray frames, defects of at most 16 px, masks) the same kind is
trained twice, resized whole (today's default) and on `tiling: auto`; both are judged per frame on the frozen test
split. The tiled model is then exported and served in process (JPEG decode, tiling, the engine) on 2448x2048
frames, against ONNX Runtime alone on the same tile batches. INSPECTION_BENCH_TILING_FRAMES sets the frame count.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import zlib

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
from serving.engine import InferenceEngine
from serving.frames import frame_size, frame_to_inputs
from training.export_pipeline import export_product
from training.pipeline import train_product

FRAMES = int(os.environ.get("INSPECTION_BENCH_TILING_FRAMES", "200"))
SIZE, MAX_DEFECT_PX = 2048, 16
SERVED_FRAMES = 12
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


async def _serve(scorer: OnnxScorer, frames: list[bytes]) -> tuple[list[float], float, int]:
    """Each frame decoded, tiled and scored as the server does, one after another: latencies, seconds, tiles."""
    engine = InferenceEngine(scorer, model_version=1, runners=1)
    latencies, tiles = [], 0
    started = time.perf_counter()
    try:
        for data in frames:
            t0 = time.perf_counter()
            inputs = await asyncio.to_thread(frame_to_inputs, data, scorer.spec, 50_000_000)
            assert isinstance(inputs, TiledFrame)
            await engine.submit(inputs)
            tiles += len(inputs.boxes)
            latencies.append(time.perf_counter() - t0)
    finally:
        await engine.close()
    return latencies, time.perf_counter() - started, tiles


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

    scorer = OnnxScorer(export_product(settings, "large-tiled").fp32_path)
    frames = _jpeg_frames(SERVED_FRAMES)
    latencies, seconds, tiles = asyncio.run(_serve(scorer, frames))
    tiled = [frame_to_inputs(data, scorer.spec, 50_000_000) for data in frames]
    started = time.perf_counter()
    for inputs in tiled:
        assert isinstance(inputs, TiledFrame)
        scorer.score_batch_with_maps(inputs.inputs)
    model_seconds = time.perf_counter() - started
    megapixels = 2448 * 2048 / 1e6
    fps = SERVED_FRAMES / seconds
    figures.update(
        {
            "tiled_served_fps_2448x2048": round(fps, 3),
            "tiled_served_p99_ms_2448x2048": round(1000 * float(np.percentile(latencies, 99)), 1),
            "tiled_served_median_ms_2448x2048": round(1000 * statistics.median(latencies), 1),
            "tiled_tiles_per_frame_2448x2048": tiles / SERVED_FRAMES,
            "tiled_server_tiles_per_s": round(tiles / seconds, 1),
            "tiled_model_only_tiles_per_s": round(tiles / model_seconds, 1),
            "tiled_server_vs_model_only": round(model_seconds / seconds, 3),
            "tiled_ms_per_megapixel": round(1000 * seconds / SERVED_FRAMES / megapixels, 1),
            "tiled_50mp_header_refused": float(_refused_50mp()),
        }
    )
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
