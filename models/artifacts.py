"""The layout of a registered version's artifact folder: one place that training writes and serving reads.

A version folder holds the torch bundle (`model.pt`, for training, evaluation and export), `evaluation/` (the
frozen-test-split report with its plots, and `served_scores.json`) and, once exported,
`onnx/model.onnx` plus `onnx/model.int8.onnx` and its own served scores when INT8 passed its accuracy gate, and
`onnx/export_report.json`. Which of these files a version serves is models/serving_choice.py's to say.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "model.pt"  # the torch bundle
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_REPORT_FILE = "export_report.json"
EVALUATION_DIR = "evaluation"  # the frozen-test-split report, its plots, and the served scores
SERVED_SCORES_FILE = "served_scores.json"  # validation and test labels with served scores (the operating curve)
INT8_SERVED_SCORES_FILE = "served_scores.int8.json"  # the same evidence, scored by the accepted INT8 file
RAW_EXPORT_FILE = "model.raw.onnx"  # the traced, unoptimized graph: only in the export's staging folder


def bundle_path(artifacts: Path) -> Path:
    """The torch bundle of a version."""
    return artifacts / MODEL_FILE


def served_scores_path(artifacts: Path) -> Path:
    """Every validation and test part's label and served score, written by training (absent on older versions)."""
    return artifacts / EVALUATION_DIR / SERVED_SCORES_FILE


def int8_served_scores_path(artifacts: Path) -> Path:
    """The validation and test scores of the accepted INT8 file, written by the export beside it."""
    return onnx_dir(artifacts) / INT8_SERVED_SCORES_FILE


def onnx_dir(artifacts: Path) -> Path:
    """The folder the export writes into."""
    return artifacts / ONNX_DIR
