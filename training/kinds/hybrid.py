"""`kind: hybrid`: a classifier and PatchCore, fused on validation, served as one graph.

For products with few defect images: the classifier learns the defects it has seen, PatchCore (good parts only)
flags what it has not, and training.fusion weighs them by the validation evidence. The fused score is calibrated
to the target miss rate like any other kind and served as sigmoid(fused - threshold). The report's `components`
block gives each part's test AUROC and miss rate at 10% false detections next to the hybrid's, so the fusion's
benefit is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.layout import ImageRecord
from inspection.metrics import auroc, miss_rate_at_false_detection
from inspection.preprocessing import PreprocessSpec, preprocess
from inspection.progress import console
from models.artifacts import FP32_FILE, RAW_EXPORT_FILE
from models.checkpoint import HybridBundle
from models.classifier import DefectClassifier
from models.hybrid import HYBRID_KIND, HybridModel, HybridOutput
from models.hybrid_export import HYBRID_PARITY_TOLERANCE, export_hybrid, hybrid_on_onnx_runtime
from models.kinds import register_kind
from models.onnx_export import optimize_onnx
from models.onnx_parity import check_parity
from models.trunk_runtime import frozen_on_onnx_runtime
from training.fusion import fit_fusion, fused_scores
from training.kinds.anomaly import anomaly_params, fit_patchcore_on, score_records, served_sigmoid
from training.kinds.base import ExportedOnnx, Fitted, Scores, TrainingJob, decoded_batches
from training.kinds.classifier import (
    classifier_params,
    classifier_training_block,
    fit_classifier,
    learnable_defect_types,
)
from training.predict import Predictions

COMPONENT_FDR = 0.10  # the operating point the components are compared at: miss rate at 10% false detections


def hybrid_outputs(
    model: HybridModel, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Every output of the hybrid on decoded records (one pass through both models), with a progress bar. Run by
    ONNX Runtime on the graph the server will run (eager PyTorch took 20-89 s over ELPV's 525 test cells,
    ONNX Runtime 4 s)."""
    model.eval()
    run = hybrid_on_onnx_runtime(model, spec, torch.get_num_threads())
    collected: dict[str, list[np.ndarray]] = {field: [] for field in HybridOutput._fields}
    for images in decoded_batches(records, batch_size, name):
        for field, value in zip(
            HybridOutput._fields, run(np.stack([preprocess(i, spec) for i in images])), strict=True
        ):
            collected[field].append(value)
    return {field: np.concatenate(values) for field, values in collected.items()}


def component_summary(labels: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per scorer: AUROC and the miss rate at COMPONENT_FDR false detections (a ranking comparison)."""
    summary = {}
    for name, values in scores.items():
        missed = miss_rate_at_false_detection(labels, values, COMPONENT_FDR)
        summary[name] = {
            "auroc": None if (value := auroc(labels, values)) is None else round(value, 6),
            f"miss_rate_at_{round(COMPONENT_FDR * 100)}pct_fdr": None if missed.rate is None else round(missed.rate, 6),
            "n_missed": missed.k,
            "n_defect": missed.n,
        }
    return summary


class _DefectLogit(nn.Module):
    """The classifier's defect logit alone, as one graph output."""

    def __init__(self, classifier: DefectClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.outputs_and_logit(images)[1]


def classifier_logits(
    classifier: DefectClassifier, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 32
) -> np.ndarray:
    """The classifier's defect logit of every record (what the fusion standardizes), with a progress bar; on ONNX
    Runtime, as the classifier's own scoring (training/predict.py)."""
    classifier.eval()
    run = frozen_on_onnx_runtime(_DefectLogit(classifier), spec.image_size, torch.get_num_threads())
    logits: list[np.ndarray] = [np.zeros(0, np.float32)]
    for images in decoded_batches(records, batch_size, f"{name} (classifier)"):
        logits.append(run(np.stack([preprocess(image, spec) for image in images])))
    return np.concatenate(logits)


@register_kind
class HybridKind:
    name = HYBRID_KIND
    supports_int8 = False  # the fused distances would need their own measured gate
    typed = True
    bundle_type = HybridBundle

    def describe(self, job: TrainingJob) -> str:
        return ""

    def params(self, job: TrainingJob) -> dict[str, Any]:
        return {**classifier_params(job.config, learnable_defect_types(job.parts)), **anomaly_params(job.config)}

    def fit(self, job: TrainingJob) -> Fitted:
        defect_types = learnable_defect_types(job.parts)
        classifier, result = fit_classifier(job, defect_types)
        patchcore = fit_patchcore_on(job.config, job.train_goods, job.spec, job.device)
        val = job.parts["val"]
        val_logit = classifier_logits(classifier, val, job.spec, "validation")
        val_distance, _ = score_records(patchcore, val, job.spec, "validation (anomaly)", job.config.anomaly.batch_size)
        val_labels = np.array([r.is_defect for r in val], dtype=np.int64)
        fit = fit_fusion(val_logit, val_distance, val_labels)
        console.print(
            f"fusion: classifier weight {fit.fusion.classifier_weight:.3f} from {fit.n_defect} validation defects"
        )
        rows = int(patchcore.memory_bank.shape[0])
        return Fitted(
            parts=(classifier, patchcore, fit.fusion, defect_types),
            val_scores=fused_scores(fit.fusion, val_logit, val_distance),
            info={
                "best_epoch": result.best_epoch,
                "memory_bank_rows": rows,
                "fusion_fit": {
                    "validation_defects": fit.n_defect,
                    "classifier_separation": fit.classifier_separation,
                    "anomaly_separation": fit.anomaly_separation,
                },
            },
            training={**classifier_training_block(result), "memory_bank_rows": rows},
            cleanup=lambda: job.checkpoint.unlink(missing_ok=True),
        )

    def fit_share(self, job: TrainingJob) -> None:
        fit_classifier(job, learnable_defect_types(job.parts))  # PatchCore and the fusion are rank 0's alone

    def extra_thresholds(self, val_labels: np.ndarray, val_scores: np.ndarray) -> dict[str, float]:
        return {}  # fused z-scores are not the served probability: a second point would be in the wrong units

    def bundle(self, job: TrainingJob, fitted: Fitted, threshold: float, info: dict[str, Any]) -> HybridBundle:
        classifier, patchcore, fusion, defect_types = fitted.parts
        fusion = replace(fusion, threshold=threshold)
        model = HybridModel(classifier, patchcore, fusion).eval()
        return HybridBundle(
            model,
            job.spec,
            defect_types,
            job.config.target_miss_rate,
            {**info, "fusion": fusion.to_dict()},
            target_false_detection_rate=job.config.target_false_detection_rate,
        )

    def score(self, bundle: HybridBundle, records: Sequence[ImageRecord], name: str) -> Scores:
        out = hybrid_outputs(bundle.model, records, bundle.spec, name)
        return Scores(
            Predictions(out["defect_probability"], out["type_probabilities"]),
            maps=out["anomaly_map"][:, 0],
            components={
                "classifier": out["classifier_logit"],
                "anomaly": out["anomaly_score"],
                "hybrid": out["defect_probability"],
            },
            calibration=fused_scores(bundle.model.fusion, out["classifier_logit"], out["anomaly_score"]),
        )

    def served_scores(self, bundle: HybridBundle, scores: np.ndarray) -> np.ndarray:
        # What HybridModel serves: sigmoid(fused z - threshold), 0.5 at the calibrated fused threshold.
        return served_sigmoid(np.asarray(scores, dtype=np.float64) - bundle.model.fusion.threshold)

    def report_extras(
        self, bundle: HybridBundle, records: Sequence[ImageRecord], scores: Scores, fitted: Fitted | None
    ) -> dict[str, Any]:
        labels = np.array([r.is_defect for r in records], dtype=np.int64)
        return {
            "hybrid": {
                "fusion": {k: round(v, 6) for k, v in bundle.model.fusion.to_dict().items()},
                **bundle.info.get("fusion_fit", {}),
                "served_threshold": bundle.threshold,
            },
            "components": component_summary(labels, scores.components),
        }

    def export(
        self, bundle: HybridBundle, staging: Path, metadata: dict[str, Any], images: Sequence[np.ndarray]
    ) -> ExportedOnnx:
        raw = export_hybrid(bundle, staging / RAW_EXPORT_FILE, metadata)
        fp32 = optimize_onnx(raw, staging / FP32_FILE)
        parity = check_parity(bundle.model, bundle.spec, fp32, images, tolerance=HYBRID_PARITY_TOLERANCE)
        console.print(f"parity: max |onnx - torch| = {parity.max_abs_diff:.2e} over {parity.n_images} test images")
        return ExportedOnnx(raw, fp32, parity)
