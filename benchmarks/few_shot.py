"""Few-shot: with only 10 defective training images, classifier vs anomaly model vs their hybrid.

A few-shot copy of a product keeps every good image and the full frozen test split, but only N_TRAIN_DEFECTS
defective training images (drawn across the defect types) and proportionally few defective validation images,
as a product with rare defects would have. `kind: hybrid` trains on it; its report scores the test split with
each component (the same classifier and PatchCore a `kind: classifier` / `kind: anomaly` run would train) and
with the fused model, at one operating point for all: the miss rate at 10% false detections. Run on a synthetic
product and on ELPV, each twice: with proportionally few validation defects (2: the fusion's weights rest on
little evidence) and with the validation split's own defects (`_fullval`: the same 10 training defects, but
enough validation defects to weigh the two models).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.context import BenchContext
from datasets.importers.elpv import import_elpv
from datasets.layout import MASKS_DIR, ImageRecord, read_metadata, scan_dataset, write_metadata
from datasets.splits import SPLITS_FILE, product_splits, split_records
from datasets.synth import generate_synthetic_product
from inspection.metrics import auroc
from inspection.product_config import load_product_config
from inspection.settings import Settings
from models.hybrid import Fusion
from training.fusion import fused_scores
from training.pipeline import train_product

N_TRAIN_DEFECTS = 10
BOOTSTRAP_RESAMPLES = 1000
SCORERS = ("classifier", "anomaly", "hybrid")
SWEEP_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
MISS_KEY = "miss_rate_at_10pct_fdr"


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no copy of thousands of images when both sit on one file system
    except OSError:
        shutil.copy2(source, target)


def _pick_defects(records: list[ImageRecord], n: int, rng: np.random.Generator) -> list[ImageRecord]:
    """n defective records spread over the defect types (round-robin over shuffled per-type lists)."""
    by_type: dict[str, list[ImageRecord]] = {}
    for record in records:
        by_type.setdefault(record.label, []).append(record)
    queues = [list(rng.permutation(np.array(items, dtype=object))) for _, items in sorted(by_type.items())]
    picked: list[ImageRecord] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop())
    return picked


def few_shot_copy(
    source: Path, dest: Path, configs_dir: Path, product: str, seed: int = 0, full_validation: bool = False
) -> dict[str, int]:
    """Write the few-shot dataset of `source` (frozen with `product`'s split settings) to `dest`; validation keeps
    proportionally few defects, or all of its own with `full_validation`."""
    config = load_product_config(configs_dir, product)
    records = scan_dataset(source)
    split = config.split
    assignment = product_splits(source, records, split)
    parts = split_records(records, assignment)
    rng = np.random.default_rng(seed)
    train_fraction = max(1.0 - split.val_fraction - split.test_fraction, 1e-6)
    n_val_defects = max(1, round(N_TRAIN_DEFECTS * split.val_fraction / train_fraction))
    kept = [r for r in records if not r.is_defect or assignment[r.relpath] == "test"]
    kept += _pick_defects([r for r in parts["train"] if r.is_defect], N_TRAIN_DEFECTS, rng)
    val_defects = [r for r in parts["val"] if r.is_defect]
    kept += val_defects if full_validation else _pick_defects(val_defects, n_val_defects, rng)
    shutil.rmtree(dest, ignore_errors=True)
    metadata = read_metadata(source)
    for record in kept:
        _link(record.path, dest / record.relpath)
        if record.mask is not None:
            _link(record.mask, dest / MASKS_DIR / record.label / record.mask.name)
    write_metadata(dest, {r.relpath: metadata[r.relpath] for r in kept if r.relpath in metadata})
    document = json.loads((source / SPLITS_FILE).read_text())
    document["assignment"] = {r.relpath: assignment[r.relpath] for r in kept}
    (dest / SPLITS_FILE).write_text(json.dumps(document, indent=1, sort_keys=True))
    sides = [assignment[r.relpath] for r in kept if r.is_defect]
    return {f"{side}_defects": sides.count(side) for side in ("train", "val", "test")}


def _hybrid_configs(workdir: Path, configs_dir: Path, base_product: str, product: str) -> Path:
    """A configs dir whose `product` is `base_product`'s YAML plus `kind: hybrid`."""
    target = workdir / f"configs-{product}"
    (target / "products").mkdir(parents=True, exist_ok=True)
    shutil.copy(configs_dir / "default.yaml", target / "default.yaml")
    base = configs_dir / "products" / f"{base_product}.yaml"
    text = base.read_text() if base.exists() else ""
    (target / "products" / f"{product}.yaml").write_text(text + "\nkind: hybrid\n")
    return target


def paired_auroc_gap(labels: np.ndarray, hybrid: np.ndarray, best: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% interval of AUROC(hybrid) - AUROC(best) by a paired bootstrap over test images (1,000 resamples)."""
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(labels), len(labels))
        first, second = auroc(labels[pick], hybrid[pick]), auroc(labels[pick], best[pick])
        if first is not None and second is not None:
            gaps.append(first - second)
    low, high = np.quantile(gaps, [0.025, 0.975])
    return round(float(low), 4), round(float(high), 4)


def _test_scores(settings: Settings, product: str, version: int) -> tuple[np.ndarray, dict[str, np.ndarray], Fusion]:
    """Labels, the three scorers' test scores of the registered hybrid (re-scored from its bundle), its fusion."""
    from models.artifacts import MODEL_FILE
    from models.checkpoint import HybridBundle
    from models.registry import resolve_version
    from training.kinds import load_bundle as load_any_bundle
    from training.kinds.hybrid import hybrid_outputs

    bundle = load_any_bundle(resolve_version(settings, product, version).artifacts / MODEL_FILE)
    assert isinstance(bundle, HybridBundle)
    root = settings.dataset_dir(product)
    records = scan_dataset(root)
    config = load_product_config(settings.configs_dir, product)
    test = split_records(records, product_splits(root, records, config.split))["test"]
    outputs = hybrid_outputs(bundle.model, test, bundle.spec, "test (bootstrap)")
    scores = {
        "classifier": outputs["classifier_logit"],
        "anomaly": outputs["anomaly_score"],
        "hybrid": outputs["defect_probability"],
    }
    return np.array([r.is_defect for r in test]), scores, bundle.model.fusion


def weight_sweep(labels: np.ndarray, logits: np.ndarray, distances: np.ndarray, fusion: Fusion) -> dict[float, float]:
    """Test AUROC of the fused score at fixed classifier weights (the fitted standardization kept).

    A diagnostic, never a result: the best of these is chosen on the test split itself, so it bounds what any
    weighting rule could reach; it tells a weak rule apart from a product where one part alone is the ceiling.
    """
    sweep = {}
    for weight in SWEEP_WEIGHTS:
        fused = fused_scores(replace(fusion, classifier_weight=weight), logits, distances)
        value = auroc(labels, fused)
        sweep[weight] = float("nan") if value is None else round(value, 4)
    return sweep


def run_product(
    context: BenchContext, label: str, source: Path, base_product: str, full_validation: bool = False
) -> dict[str, float]:
    """Few-shot copy of `source`, hybrid training, and the three scorers' test figures under `label`."""
    product = f"{base_product}-fewshot"
    label = f"{label}_fullval" if full_validation else label
    configs = _hybrid_configs(context.workdir, context.configs_dir, base_product, product)
    settings = Settings(home=context.workdir / f"fewshot-{label}-home", configs_dir=configs)
    counts = few_shot_copy(
        source, settings.dataset_dir(product), context.configs_dir, base_product, full_validation=full_validation
    )
    started = time.perf_counter()
    outcome = train_product(settings, product)
    components = outcome.report["components"]
    figures: dict[str, float] = {f"fewshot_{label}_{k}": v for k, v in counts.items()}
    figures[f"fewshot_{label}_train_seconds"] = round(time.perf_counter() - started, 1)
    figures[f"fewshot_{label}_classifier_weight"] = round(outcome.report["hybrid"]["fusion"]["classifier_weight"], 4)
    for scorer in SCORERS:
        figures[f"fewshot_{label}_{scorer}_auroc"] = components[scorer]["auroc"]
        figures[f"fewshot_{label}_{scorer}_miss_at_10pct_fdr"] = components[scorer][MISS_KEY]
    best_auroc = max(components[s]["auroc"] for s in ("classifier", "anomaly"))
    best_miss = min(components[s][MISS_KEY] for s in ("classifier", "anomaly"))
    figures[f"fewshot_{label}_hybrid_auroc_minus_best"] = round(components["hybrid"]["auroc"] - best_auroc, 4)
    figures[f"fewshot_{label}_hybrid_miss_minus_best"] = round(components["hybrid"][MISS_KEY] - best_miss, 4)
    # Is a gap real or the noise of a small test split? Paired: the same resampled images for both scorers.
    labels, scores, fusion = _test_scores(settings, product, outcome.version)
    better = max(("classifier", "anomaly"), key=lambda s: components[s]["auroc"])
    low, high = paired_auroc_gap(labels, scores["hybrid"], scores[better])
    figures[f"fewshot_{label}_hybrid_auroc_minus_best_ci95_low"] = low
    figures[f"fewshot_{label}_hybrid_auroc_minus_best_ci95_high"] = high
    for weight, value in weight_sweep(labels, scores["classifier"], scores["anomaly"], fusion).items():
        figures[f"fewshot_{label}_test_auroc_at_classifier_weight_{weight:g}"] = value
    return figures


def run_synthetic(context: BenchContext) -> dict[str, float]:
    """The synthetic product: four defect types drawn on three textures, 256 px drawn, trained at 128 px."""
    source = context.workdir / "fewshot-synthetic-source"
    generate_synthetic_product(source, n=500, seed=5, image_size=256, defect_fraction=0.3)
    configs = context.workdir / "configs-fewshot-synthetic-base"
    (configs / "products").mkdir(parents=True, exist_ok=True)
    shutil.copy(context.configs_dir / "default.yaml", configs / "default.yaml")
    (configs / "products" / "synthetic.yaml").write_text("image_size: 128\ncolor_mode: gray\n")
    base = BenchContext(configs, context.workdir)
    return {
        **run_product(base, "synthetic", source, "synthetic"),
        **run_product(base, "synthetic", source, "synthetic", full_validation=True),
    }


def run_elpv(context: BenchContext) -> dict[str, float]:
    """ELPV solar cells, imported fresh (the few-shot copy links its images)."""
    source = context.workdir / "fewshot-elpv-source"
    import_elpv(source, "solar-cells", replace=True)
    return {
        **run_product(context, "elpv", source, "solar-cells"),
        **run_product(context, "elpv", source, "solar-cells", full_validation=True),
    }


def run(context: BenchContext) -> dict[str, float]:
    return {**run_synthetic(context), **run_elpv(context)}
