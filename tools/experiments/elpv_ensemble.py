"""What averaging several ELPV models would give, from the test scores `elpv_variant` saved: no training.

    python -m tools.experiments.elpv_ensemble runs/defaults-s0-test-scores.json runs/defaults-s1-test-scores.json

Each file is one run's `<name>-test-scores.json` (every test cell's score, label and annotators' defect
probability); the runs must share the split (the same source home). Prints, for each run and for the mean of
their probabilities, the figures the ELPV goals judge a ranking by (docs/elpv.md): test AUROC, AUROC over the
cells all annotators agreed on, and the miss rate at 10 % false detections. An ensemble costs each run's
training time and each model's inference, so it is worth building only if these move well beyond what a reseed
moves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.elpv_training import FDR_BUDGET
from inspection.metrics import auroc, miss_rate_at_false_detection
from tools.experiments.elpv_variant import unanimous_auroc


def load_cells(path: Path) -> list[dict[str, Any]]:
    """One run's test cells, in a fixed order (by path) so runs line up cell by cell."""
    cells: list[dict[str, Any]] = json.loads(path.read_text())
    return sorted(cells, key=lambda cell: str(cell["relpath"]))


def aligned_runs(paths: list[Path]) -> tuple[list[int], list[float | None], dict[str, list[float]]]:
    """The runs' shared test cells: (labels, annotators' defect probabilities, {run name: scores}), cell by cell;
    exits when a run was scored on other cells (another source home's split)."""
    runs = {path.name.removesuffix("-test-scores.json"): load_cells(path) for path in paths}
    first = next(iter(runs.values()))
    cells = [cell["relpath"] for cell in first]
    for name, run in runs.items():
        if [cell["relpath"] for cell in run] != cells:
            raise SystemExit(f"{name} was scored on other test cells: the runs must share one source home's split")
    labels = [int(cell["label"]) for cell in first]
    probabilities = [cell["defect_probability"] for cell in first]
    return labels, probabilities, {name: [float(cell["score"]) for cell in run] for name, run in runs.items()}


def figures(labels: list[int], scores: list[float], probabilities: list[float | None]) -> dict[str, float | None]:
    y, s = np.array(labels), np.array(scores)
    miss = miss_rate_at_false_detection(y, s, FDR_BUDGET).rate
    return {
        "test_auroc": round(auroc(y, s), 4),
        "unanimous_auroc": _rounded(unanimous_auroc(probabilities, labels, scores)),
        "miss_rate_at_10pct_fdr": _rounded(miss),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", type=Path, nargs="+", help="<name>-test-scores.json files of elpv_variant runs")
    args = parser.parse_args()
    labels, probabilities, score_lists = aligned_runs(args.scores)
    for name, scores in score_lists.items():
        print(json.dumps({"run": name, **figures(labels, scores, probabilities)}))
    mean = np.mean(np.array(list(score_lists.values())), axis=0).tolist()
    print(json.dumps({"run": "mean of " + " + ".join(score_lists), **figures(labels, mean, probabilities)}))


if __name__ == "__main__":
    main()
