"""`inspection train P` for `kind: hybrid`: a classifier and PatchCore, fused on validation, as one version.

For products with few defect images: the classifier learns the defects it has seen, PatchCore (good parts only)
flags what it has not, and training.fusion weighs them by the validation evidence. The fused score is calibrated
to the target miss rate like any other kind. The report's `components` block gives each part's test AUROC and
miss rate at 10% false detections next to the hybrid's, so the fusion's benefit is measured, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from datasets.layout import ImageRecord, label_counts
from datasets.splits import Split
from inspection.imaging import read_image
from inspection.metrics import auroc, miss_rate_at_false_detection
from inspection.preprocessing import PreprocessSpec, preprocess
from inspection.product_config import ProductConfig
from inspection.progress import console, progress_task
from inspection.settings import Settings
from models.checkpoint import HYBRID_SERVED_THRESHOLD, HybridBundle
from models.classifier import DefectClassifier
from models.hybrid import HybridModel, HybridOutput
from training import tracking
from training.anomaly_pipeline import fit_patchcore_on, log_pixel_metrics, score_records
from training.calibration import calibrate_threshold
from training.evaluate import build_report, pixel_metrics, recent_slice_block
from training.fusion import fit_fusion, fused_scores
from training.pipeline import (
    TrainOutcome,
    classifier_params,
    fit_classifier,
    learnable_defect_types,
    log_run_inputs,
    print_run_header,
    run_params,
)
from training.predict import Predictions
from training.publish import publish_version

COMPONENT_FDR = 0.10  # the operating point the components are compared at: miss rate at 10% false detections


def hybrid_outputs(
    model: HybridModel, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Every output of the hybrid on decoded records (one pass through both models), with a progress bar."""
    collected: dict[str, list[np.ndarray]] = {field: [] for field in HybridOutput._fields}
    model.eval()
    with progress_task(f"scoring {name}", len(records)) as advance, torch.inference_mode():
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            batch = torch.from_numpy(np.stack([preprocess(read_image(r.path), spec) for r in chunk]))
            for field, value in zip(HybridOutput._fields, model(batch), strict=True):
                collected[field].append(value.numpy())
            advance(len(chunk))
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


@torch.inference_mode()
def classifier_logits(
    classifier: DefectClassifier, records: Sequence[ImageRecord], spec: PreprocessSpec, name: str, batch_size: int = 32
) -> np.ndarray:
    """The classifier's defect logit of every record (what the fusion standardizes), with a progress bar."""
    classifier.eval()
    logits: list[np.ndarray] = [np.zeros(0, np.float32)]
    with progress_task(f"scoring {name} (classifier)", len(records)) as advance:
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            batch = torch.from_numpy(np.stack([preprocess(read_image(r.path), spec) for r in chunk]))
            logits.append(classifier.outputs_and_logit(batch)[1].numpy())
            advance(len(chunk))
    return np.concatenate(logits)


def train_hybrid_product(
    settings: Settings,
    product: str,
    config: ProductConfig,
    records: list[ImageRecord],
    parts: dict[Split, list[ImageRecord]],
    spec: PreprocessSpec,
    device: torch.device,
    started: float,
    resume: bool = False,
) -> TrainOutcome:
    """Train the classifier, fit PatchCore on the good training parts, fuse and calibrate on validation,
    evaluate on the frozen test split, register one version that serves both."""
    defect_types = learnable_defect_types(parts)
    goods = [r for r in parts["train"] if not r.is_defect]
    print_run_header(product, "hybrid", records, parts, spec, device)
    params = {
        **run_params(product, config, records, parts, spec, device),
        **classifier_params(config, defect_types),
        **{f"anomaly.{k}": v for k, v in config.anomaly.model_dump().items()},
    }
    with tracking.training_run(settings, product, params) as run:
        log_run_inputs(config, parts)
        classifier, result, checkpoint = fit_classifier(
            settings, product, config, parts, spec, defect_types, device, resume
        )
        patchcore = fit_patchcore_on(config, goods, spec, device)
        val_logit = classifier_logits(classifier, parts["val"], spec, "validation")
        val_distance, _ = score_records(
            patchcore, parts["val"], spec, "validation (anomaly)", config.anomaly.batch_size
        )
        val_labels = np.array([r.is_defect for r in parts["val"]], dtype=np.int64)
        fit = fit_fusion(val_logit, val_distance, val_labels)
        calibration = calibrate_threshold(
            val_labels, fused_scores(fit.fusion, val_logit, val_distance), config.target_miss_rate
        )
        fusion = replace(fit.fusion, threshold=calibration.threshold)
        console.print(
            f"fusion: classifier weight {fusion.classifier_weight:.3f} from {fit.n_defect} validation defects; "
            f"threshold {calibration.threshold:.3f} (fused z): {calibration.note}"
        )
        model = HybridModel(classifier, patchcore, fusion).eval()
        test = hybrid_outputs(model, parts["test"], spec, "test", config.anomaly.batch_size)
        recent = None
        if parts["recent"]:
            recent = hybrid_outputs(model, parts["recent"], spec, "recent line data", config.anomaly.batch_size)
        predictions = Predictions(test["defect_probability"], test["type_probabilities"])
        bundle = HybridBundle(
            model=model,
            spec=spec,
            classifier_types=defect_types,
            target_miss_rate=config.target_miss_rate,
            info={
                "product": product,
                "kind": "hybrid",
                "run_id": run.info.run_id,
                "best_epoch": result.best_epoch,
                "calibration": calibration.__dict__,
                "fusion": fusion.to_dict(),
                "label_counts": label_counts(records),
                "split_counts": {k: len(v) for k, v in parts.items()},
                "memory_bank_rows": int(patchcore.memory_bank.shape[0]),
            },
        )

        def make_report(version: int) -> dict[str, Any]:
            report = build_report(
                product,
                version,
                HYBRID_SERVED_THRESHOLD,
                config.target_miss_rate,
                parts["test"],
                predictions,
                bundle.defect_types,
                data_source="test split",
            )
            pixels = pixel_metrics(parts["test"], test["anomaly_map"])
            if pixels is not None:
                report["test"].update(pixels)
            test_labels = np.array([r.is_defect for r in parts["test"]], dtype=np.int64)
            report["kind"] = "hybrid"
            report["calibration"] = calibration.__dict__
            report["recent_line_data"] = recent_slice_block(
                parts["recent"],
                None if recent is None else Predictions(recent["defect_probability"], recent["type_probabilities"]),
                bundle.defect_types,
                HYBRID_SERVED_THRESHOLD,
            )
            report["hybrid"] = {
                "fusion": {k: round(v, 6) for k, v in fusion.to_dict().items()},
                "validation_defects": fit.n_defect,
                "classifier_separation": fit.classifier_separation,
                "anomaly_separation": fit.anomaly_separation,
                "served_threshold": HYBRID_SERVED_THRESHOLD,
            }
            report["components"] = component_summary(
                test_labels,
                {
                    "classifier": test["classifier_logit"],
                    "anomaly": test["anomaly_score"],
                    "hybrid": test["defect_probability"],
                },
            )
            report["training"] = {
                "epochs_run": len(result.history),
                "best_epoch": result.best_epoch + 1,
                "memory_bank_rows": int(patchcore.memory_bank.shape[0]),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log_pixel_metrics(report)
            return report

        tags = {"kind": "hybrid", "target_miss_rate": str(config.target_miss_rate), "threshold": "0.5"}
        version, report = publish_version(settings, product, run, bundle, tags, parts["test"], predictions, make_report)
        checkpoint.unlink(missing_ok=True)
    return TrainOutcome.registered(settings, product, version, run.info.run_id, report, calibration, started)
