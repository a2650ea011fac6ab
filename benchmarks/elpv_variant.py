"""One ELPV training run with a config override, on a copy of an imported home, scored as the bench scores ELPV
(issue 15's figures: test AUROC, balanced accuracy, miss rate at 10 % false detections, training time).

    python -m benchmarks.elpv_variant --source-home <home> --name lite1 --override '{backbone: lite1}'

The copy (datasets, registry, database; not the frame archive) keeps the source's frozen split, so runs of
different overrides are judged on the same test cells. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from benchmarks.elpv_training import FDR_BUDGET, PRODUCT, balanced_accuracy
from inspection.metrics import miss_rate_at_false_detection
from inspection.settings import Settings
from training.pipeline import train_product

REPO = Path(__file__).resolve().parents[1]
COPIED = ("datasets", "mlflow", "runs", "inspection.db")  # everything a training run reads or extends


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s keys replacing its own, nested mappings merged key by key."""
    result = dict(base)
    for key, value in override.items():
        result[key] = merged(result.get(key) or {}, value) if isinstance(value, dict) else value
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-home", type=Path, required=True, help="an INSPECTION_HOME with solar-cells imported")
    parser.add_argument("--name", required=True, help="names the copy: <workdir>/<name>-home and -configs")
    parser.add_argument("--override", default="{}", help="YAML merged into the product's config")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    home, configs = args.workdir / f"{args.name}-home", args.workdir / f"{args.name}-configs"
    for folder in (home, configs):
        shutil.rmtree(folder, ignore_errors=True)
    home.mkdir(parents=True)
    for part in COPIED:
        source = args.source_home / part
        if source.is_dir():
            shutil.copytree(source, home / part)
        elif source.is_file():
            shutil.copy(source, home / part)
    shutil.copytree(REPO / "configs", configs)
    product_file = configs / "products" / f"{PRODUCT}.yaml"
    config = yaml.safe_load(product_file.read_text()) or {}
    product_file.write_text(yaml.safe_dump(merged(config, yaml.safe_load(args.override) or {})))

    outcome = train_product(Settings(home=home, configs_dir=configs), PRODUCT)
    assert outcome.test_labels is not None and outcome.test_scores is not None
    balanced = outcome.report["operating_points"]["max_validation_accuracy"]
    miss = miss_rate_at_false_detection(outcome.test_labels, outcome.test_scores, FDR_BUDGET).rate
    figures = {
        "name": args.name,
        "override": args.override,
        "elpv_test_auroc": outcome.report["test"]["auroc"],
        "elpv_test_balanced_accuracy": balanced_accuracy(balanced),
        "elpv_test_miss_rate_at_10pct_fdr": None if miss is None else round(miss, 4),
        "elpv_train_seconds": round(outcome.seconds, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
