"""`make bench` keeps what it measured when one benchmark crashes, and still fails."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import run
from benchmarks.context import BenchContext


def _measures(context: BenchContext) -> dict[str, Any]:
    return {"first_fps": 12.5}


def _crashes(context: BenchContext) -> dict[str, Any]:
    raise RuntimeError("the line lost frames")


def _measures_after(context: BenchContext) -> dict[str, Any]:
    return {"last_ratio": 1.1}


def test_a_crashing_benchmark_keeps_the_others_figures_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    benchmarks = {"first": _measures, "crashing": _crashes, "last": _measures_after}
    monkeypatch.setattr(run, "BENCHMARKS", benchmarks)
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["run", "--out", str(out)])
    with pytest.raises(SystemExit, match="benchmarks failed: crashing"):
        run.main()
    assert json.loads(out.read_text()) == {"first_fps": 12.5, "last_ratio": 1.1, "failed": ["crashing"]}


def test_a_refused_int8s_export_timing_does_not_pass_for_the_interleaved_speed_up(tmp_path: Path) -> None:
    """A refused INT8 file is gone, so server_load can only quote the export's one-after-the-other timing; it must
    name it as such, not overwrite `inference_speed`'s interleaved `int8_vs_fp32_bs1` in the same run."""
    from benchmarks.server_load import _int8_figures
    from models.artifacts import EXPORT_REPORT_FILE, onnx_dir

    onnx_dir(tmp_path).mkdir()
    report = {"int8": {"accepted": False}, "int8_path": None, "latency_ms_bs1": {"fp32": 9.0, "int8": 3.0}}
    (onnx_dir(tmp_path) / EXPORT_REPORT_FILE).write_text(json.dumps(report))
    figures = _int8_figures(tmp_path / "model.onnx", tmp_path, frames=[])
    assert figures["int8_accepted"] == 0.0 and figures["int8_vs_fp32_bs1_at_export"] == 3.0
    assert "int8_vs_fp32_bs1" not in figures


def test_an_accepted_int8s_interleaved_timing_is_named_for_the_served_file(tmp_path: Path) -> None:
    """server_load times an accepted INT8 file against fp32 itself; that figure is of the served file, and
    `inference_speed`'s `int8_vs_fp32_bs1` of the same run keeps its own name."""
    import cv2
    import numpy as np
    import torch

    from benchmarks.server_load import _int8_figures
    from inspection.preprocessing import PreprocessSpec
    from models.artifacts import EXPORT_REPORT_FILE, FP32_FILE, onnx_dir
    from models.classifier import DefectClassifier
    from models.onnx_export import export_classifier

    torch.manual_seed(0)
    model = DefectClassifier(num_defect_types=1, trainable_stages=1, pretrained=False).eval()
    fp32 = export_classifier(
        model, PreprocessSpec(image_size=32, color_mode="gray"), onnx_dir(tmp_path) / FP32_FILE, {"threshold": 0.5}
    )
    int8 = onnx_dir(tmp_path) / "model.int8.onnx"
    int8.write_bytes(fp32.read_bytes())  # stands in for the accepted file: only the figures' names are checked
    report = {"int8": {"accepted": True}, "int8_path": str(int8), "latency_ms_bs1": {"fp32": 9.0, "int8": 3.0}}
    (onnx_dir(tmp_path) / EXPORT_REPORT_FILE).write_text(json.dumps(report))
    frame = cv2.imencode(".jpg", np.full((48, 48), 128, np.uint8))[1].tobytes()
    figures = _int8_figures(int8, tmp_path, frames=[frame])
    assert figures["int8_accepted"] == 1.0 and figures["served_model_int8"] == 1.0
    assert figures["int8_vs_fp32_bs1_served"] > 0 and figures["int8_latency_ms_bs1_served"] > 0
    assert "int8_vs_fp32_bs1" not in figures and "int8_vs_fp32_bs1_at_export" not in figures
