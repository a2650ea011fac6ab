"""Champion and candidate side by side on the recent slice: QA-reviewed line frames that no version trained on.

Each version's report holds the recent slice as it was when that version was trained; frames imported since
make those blocks incomparable. Promotion therefore re-scores the slice as it is now with each version's
exported ONNX model (what serves, no torch), so both are measured on the same frames.
"""

from __future__ import annotations

from datasets.layout import scan_dataset
from datasets.splits import SPLITS_FILE, product_splits, split_records
from inspection.imaging import read_image
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.onnx_runtime import OnnxScorer
from models.promotion import rate_text
from models.registry import resolve_version
from models.serving_choice import serving_file
from training.evaluate import evaluate_predictions
from training.predict import Predictions


def recent_slice_text(settings: Settings, product: str, versions: list[int]) -> str:
    """A few lines comparing `versions` on the product's current recent slice, or why there is nothing to show."""
    root = settings.dataset_dir(product)
    if not (root / SPLITS_FILE).exists():
        return "recent line data: none (the product has no frozen split yet)"
    config = load_product_config(settings.configs_dir, product)
    records = scan_dataset(root)
    recent = split_records(records, product_splits(root, records, config.split))["recent"]
    if not recent:
        return "recent line data: none (import QA-reviewed frames with `inspection datasets import reviewed`)"
    n_defect = sum(r.is_defect for r in recent)
    counts = f"{n_defect} defective, {len(recent) - n_defect} good QA-reviewed frames"
    lines = [f"recent line data ({counts}, never trained on):"]
    images = [read_image(r.path) for r in recent]
    for version in versions:
        path = serving_file(resolve_version(settings, product, version).artifacts)
        if path is None:
            lines.append(f"  v{version}: not exported, cannot be scored")
            continue
        scorer = OnnxScorer(path)
        probability, types = scorer.score_images(images)
        block = evaluate_predictions(
            recent, Predictions(probability, types), scorer.defect_types, float(scorer.threshold or 0.5)
        )
        miss = rate_text(block.miss_rate, block.miss_rate_ci95, block.n_defect)
        fdr = rate_text(block.false_detection_rate, block.false_detection_rate_ci95, block.n_good)
        per_type = ", ".join(f"{name} {row.n_missed}/{row.n}" for name, row in block.per_defect_type.items())
        lines.append(f"  v{version}: miss rate {miss}; false detections {fdr}; missed per type: {per_type or '-'}")
    return "\n".join(lines)
