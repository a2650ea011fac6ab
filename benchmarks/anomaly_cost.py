"""CPU cost of anomaly scoring against the classifier: both exported to ONNX at 224x224, both through the
server's own OnnxScorer, timed at batch 1 in interleaved blocks so the machine's noise hits both.

The bound (docs/training.md): anomaly scoring of one 224x224 frame within 3x the classifier's latency on 2 cores. The
PatchCore is fitted on synthetic good parts with the default memory-bank bound; the classifier is the same
pretrained backbone with untrained heads (its cost does not depend on what the heads learned).
"""

from __future__ import annotations

import statistics

import numpy as np
import torch

from benchmarks.context import BenchContext
from benchmarks.inference_speed import _interleaved
from datasets.layout import scan_dataset
from datasets.synth import generate_synthetic_product
from inspection.imaging import read_image
from inspection.names import GOOD_LABEL
from inspection.preprocessing import PreprocessSpec, preprocess
from models.anomaly import PatchCore, fit_patchcore, image_batches, score_images
from models.anomaly_export import ServedAnomaly, export_served_anomaly
from models.classifier import DefectClassifier
from models.onnx_export import export_classifier, optimize_onnx
from models.onnx_runtime import OnnxScorer

SIZE = 224
FIT_IMAGES = 64
TIMED_FRAMES = 20


def run(context: BenchContext) -> dict[str, float]:
    """Figures: median batch-1 latency of each model in ONNX Runtime, and their ratio."""
    root = context.workdir / "anomaly-cost" / "widget"
    generate_synthetic_product(root, n=120, seed=5, image_size=SIZE, defect_fraction=0.3)
    spec = PreprocessSpec(image_size=SIZE, color_mode="gray")
    goods = [read_image(r.path) for r in scan_dataset(root) if r.label == GOOD_LABEL]
    torch.manual_seed(0)
    patchcore = PatchCore().eval()
    fit_patchcore(patchcore, image_batches(goods[:FIT_IMAGES], spec))
    scores, _ = score_images(patchcore, goods[FIT_IMAGES:], spec)
    threshold = float(np.percentile(scores, 99))  # only fixes the probability scale; latency ignores it
    anomaly = export_served_anomaly(
        ServedAnomaly(patchcore, threshold, max(float(np.std(scores)), 1e-3)),
        spec,
        context.workdir / "anomaly-cost" / "anomaly.raw.onnx",
        {"model_version": 1},
    )
    classifier = export_classifier(
        DefectClassifier(num_defect_types=4).eval(),
        spec,
        context.workdir / "anomaly-cost" / "classifier.raw.onnx",
        {"model_version": 1, "threshold": 0.5, "defect_types": ["crack", "scratch", "spot", "stain"]},
    )
    scorers = {
        name: OnnxScorer(optimize_onnx(path, path.with_name(f"{name}.onnx")))
        for name, path in (("classifier", classifier), ("anomaly", anomaly))
    }
    frames = [preprocess(image, spec)[None] for image in goods[:TIMED_FRAMES]]
    samples = _interleaved({name: scorer.score_batch for name, scorer in scorers.items()}, frames, rounds=3)
    median = {name: 1000 * statistics.median(times) for name, times in samples.items()}
    return {
        "classifier_ort_ms_bs1_224": round(median["classifier"], 2),
        "anomaly_ort_ms_bs1_224": round(median["anomaly"], 2),
        "anomaly_vs_classifier_bs1": round(median["anomaly"] / median["classifier"], 2),
        "anomaly_memory_bank_rows": int(patchcore.memory_bank.shape[0]),
    }
