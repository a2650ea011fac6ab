"""Torch eager vs ONNX Runtime fp32 vs INT8 on the same machine, in one run, interleaved so noise hits all three.

Latency at batch 1 (median of many single-image calls) and throughput in images/s at batch 1, 8 and 32, on
preprocessed ELPV test images, with each engine on all cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from datasets.layout import scan_dataset
from datasets.splits import product_splits, split_records
from inspection.imaging import read_image
from inspection.preprocessing import preprocess
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.artifacts import INT8_FILE, MODEL_FILE
from models.onnx_export import export_classifier
from models.onnx_runtime import OnnxScorer, read_onnx_metadata
from models.quantize import quantize_int8
from models.registry import resolve_version
from training.export_pipeline import export_product
from training.kinds import load_bundle

Engine = Callable[[np.ndarray], object]
BATCH_SIZES = (1, 8, 32)
LATENCY_CALLS_PER_BLOCK = 20
ROUNDS = 3
SETTLE_SECONDS = 0.5


def _engines(settings: Settings, product: str, workdir: Path) -> tuple[dict[str, Engine], dict[str, float]]:
    outcome = export_product(settings, product, int8=True)
    info = resolve_version(settings, product, outcome.version)
    bundle = load_bundle(info.artifacts / MODEL_FILE)
    int8_path = outcome.int8_path
    if int8_path is None:
        # Refused by the accuracy gate: time a candidate anyway so the report can say what was given up.
        config = load_product_config(settings.configs_dir, product)
        records = scan_dataset(settings.dataset_dir(product))
        parts = split_records(
            records,
            product_splits(settings.dataset_dir(product), records, config.split),
        )
        calibration = [read_image(r.path) for r in parts["train"][:128]]
        # Quantization wants the plain export, not ORT's optimized graph with its fused contrib ops.
        raw = export_classifier(bundle.model, bundle.spec, workdir / "raw.onnx", read_onnx_metadata(outcome.fp32_path))
        int8_path = quantize_int8(raw, workdir / INT8_FILE, calibration, bundle.spec)
    fp32, int8 = OnnxScorer(outcome.fp32_path), OnnxScorer(int8_path)
    model = bundle.model.eval()

    def torch_eager(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(batch))

    figures = {
        "int8_accepted": float(outcome.int8 is not None and outcome.int8.accepted),
        "onnx_fp32_size_mb": round(outcome.sizes_mb["fp32"], 2),
        "onnx_int8_size_mb": round(int8_path.stat().st_size / 1e6, 2),
        "onnx_parity_max_abs_diff": outcome.parity.max_abs_diff,
    }
    return {"torch": torch_eager, "ort_fp32": fp32.score_batch, "ort_int8": int8.score_batch}, figures


def _inputs(settings: Settings, product: str, n: int) -> np.ndarray:
    info = resolve_version(settings, product)
    spec = load_bundle(info.artifacts / MODEL_FILE).spec
    records = sorted(scan_dataset(settings.dataset_dir(product)), key=lambda r: r.relpath)[:n]
    return np.stack([preprocess(read_image(r.path), spec) for r in records])


def _timed_block(engine: Engine, batches: list[np.ndarray]) -> list[float]:
    """Seconds per call for a block of calls, after one untimed call that wakes the engine's thread pool."""
    engine(batches[0])
    times = []
    for batch in batches:
        began = time.perf_counter()
        engine(batch)
        times.append(time.perf_counter() - began)
    return times


def _interleaved(engines: dict[str, Engine], batches: list[np.ndarray], rounds: int) -> dict[str, list[float]]:
    """Alternate engines block by block, so machine noise is shared across them.

    Blocks, not single calls: torch's OpenMP workers and ONNX Runtime's pool spin after a call, and a call
    squeezed between another engine's calls would pay for that engine's spinning threads.
    """
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            time.sleep(SETTLE_SECONDS)
            samples[name].extend(_timed_block(engine, batches))
    return samples


def run_speed(settings: Settings, product: str, workdir: Path) -> dict[str, float]:
    """Figures: per-engine latency and throughput, and the ratios docs/benchmarks.md quotes."""
    engines, figures = _engines(settings, product, workdir)
    inputs = _inputs(settings, product, 64)
    single = [inputs[i][None] for i in range(LATENCY_CALLS_PER_BLOCK)]
    for name, times in _interleaved(engines, single, ROUNDS).items():
        figures[f"{name}_latency_ms_bs1"] = round(1000 * statistics.median(times), 2)
        figures[f"{name}_latency_ms_bs1_p90"] = round(1000 * float(np.percentile(times, 90)), 2)
    for batch in BATCH_SIZES:
        batches = [inputs[start : start + batch] for start in range(0, len(inputs) - batch + 1, batch)]
        for name, times in _interleaved(engines, batches, ROUNDS).items():
            figures[f"{name}_images_per_s_bs{batch}"] = round(batch * len(times) / sum(times), 1)
    figures["ort_fp32_vs_torch_bs1"] = round(figures["torch_latency_ms_bs1"] / figures["ort_fp32_latency_ms_bs1"], 2)
    figures["int8_vs_fp32_bs1"] = round(figures["ort_fp32_latency_ms_bs1"] / figures["ort_int8_latency_ms_bs1"], 2)
    return figures
