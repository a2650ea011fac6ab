"""One ELPV training run with a config override, on a copy of an imported home, scored as the bench scores ELPV
(the ELPV goals' figures, docs/elpv.md: test AUROC, balanced accuracy, miss rate at 10 % false detections,
training time).

    python -m tools.experiments.elpv_variant --source-home <home> --name lite1 --override '{backbone: lite1}'
    python -m tools.experiments.elpv_variant --source-home <home> --name gem --ablation gem-pooling

The copy (datasets, registry, database; not the frame archive) keeps the source's frozen split, so runs of
different overrides are judged on the same test cells. Prints the figures as JSON, and writes every test cell's
score with its annotators' defect probability to <workdir>/<name>-test-scores.json, so a diagnostic (e.g. the
AUROC on the cells all annotators agreed on) needs no retraining.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.elpv_training import FDR_BUDGET, PRODUCT, balanced_accuracy
from inspection.metrics import auroc, miss_rate_at_false_detection
from inspection.settings import Settings
from tools.experiments.elpv_ablations import ABLATIONS, ablation, unanimous_share
from tools.home_copy import copy_home
from training.pipeline import train_product

REPO = Path(__file__).resolve().parents[2]
COPIED = ("datasets", "mlflow", "runs", "inspection.db")  # everything a training run reads or extends


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s keys replacing its own, nested mappings merged key by key."""
    result = dict(base)
    for key, value in override.items():
        result[key] = merged(result.get(key) or {}, value) if isinstance(value, dict) else value
    return result


def unanimous_auroc(probabilities: list[float | None], labels: list[int], scores: list[float]) -> float | None:
    """Test AUROC over the cells whose annotators all agreed (defect probability 0 or 1): how well the model ranks
    where the label itself is not in dispute."""
    kept = [(label, score) for p, label, score in zip(probabilities, labels, scores, strict=True) if unanimous_share(p)]
    return auroc(np.array([k[0] for k in kept]), np.array([k[1] for k in kept])) if kept else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-home", type=Path, required=True, help="an INSPECTION_HOME with solar-cells imported")
    parser.add_argument("--name", required=True, help="names the copy: <workdir>/<name>-home and -configs")
    parser.add_argument("--override", default="{}", help="YAML merged into the product's config")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--ablation", choices=sorted(ABLATIONS), help="one change that is not a config option")
    args = parser.parse_args()
    home, configs = args.workdir / f"{args.name}-home", args.workdir / f"{args.name}-configs"
    for folder in (home, configs):
        shutil.rmtree(folder, ignore_errors=True)
    settings = Settings(home=home, configs_dir=configs)
    # A copy that stands alone: the run's model lands in the copy's artifacts, not in the source home's.
    copy_home(Settings(home=args.source_home), settings, COPIED)
    shutil.copytree(REPO / "configs", configs)
    product_file = configs / "products" / f"{PRODUCT}.yaml"
    config = yaml.safe_load(product_file.read_text()) or {}
    product_file.write_text(yaml.safe_dump(merged(config, yaml.safe_load(args.override) or {})))

    with ablation(args.ablation):
        outcome = train_product(settings, PRODUCT)
    assert outcome.test_labels is not None and outcome.test_scores is not None and outcome.test_records is not None
    labels, scores = outcome.test_labels.astype(int).tolist(), outcome.test_scores.astype(float).tolist()
    probabilities = [r.meta.get("defect_probability") for r in outcome.test_records]
    cells = [
        {"relpath": r.relpath, "label": label, "score": score, "defect_probability": p}
        for r, label, score, p in zip(outcome.test_records, labels, scores, probabilities, strict=True)
    ]
    (args.workdir / f"{args.name}-test-scores.json").write_text(json.dumps(cells))
    # The hybrid reports no max-accuracy point (its fused scores are not in the served probability's units).
    balanced = outcome.report["operating_points"].get("max_validation_accuracy")
    miss = miss_rate_at_false_detection(outcome.test_labels, outcome.test_scores, FDR_BUDGET).rate
    figures = {
        "name": args.name,
        "override": args.override,
        "ablation": args.ablation,
        "elpv_test_auroc": outcome.report["test"]["auroc"],
        "elpv_test_balanced_accuracy": None if balanced is None else balanced_accuracy(balanced),
        "elpv_test_miss_rate_at_10pct_fdr": None if miss is None else round(miss, 4),
        "elpv_train_seconds": round(outcome.seconds, 1),
        "elpv_test_auroc_unanimous_cells": unanimous_auroc(probabilities, labels, scores),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
