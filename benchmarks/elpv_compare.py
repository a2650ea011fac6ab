"""Is one ELPV run better than another, or did the test split's sampling move it? From saved scores, no training.

    python -m benchmarks.elpv_compare /work/runs/defaults-s0-test-scores.json /work/runs/gem-test-scores.json

Both files are `<name>-test-scores.json` of `benchmarks.elpv_variant` runs on one source home's split. Prints the
candidate's test AUROC minus the baseline's with a paired, label-stratified bootstrap 95 % interval (the same
resampled cells score both runs, the INT8 gate's method), the same over the cells all annotators agreed on, and
the defects each run misses at 10 % false detections. An interval that holds 0 means the 525 test cells cannot
tell the two runs apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.elpv_ensemble import load_cells
from benchmarks.elpv_training import FDR_BUDGET
from inspection.metrics import auroc, miss_rate_at_false_detection
from training.int8_gate import paired_bootstrap_auroc_loss

RESAMPLES = 2000


def auroc_gain(labels: np.ndarray, baseline: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Candidate minus baseline AUROC on these cells, with the bootstrap's 2.5th and 97.5th percentiles."""
    gains = -paired_bootstrap_auroc_loss(labels, baseline, candidate, n_resamples=RESAMPLES)
    low, high = np.percentile(gains, [2.5, 97.5])
    return {
        "gain": round(float(auroc(labels, candidate)) - float(auroc(labels, baseline)), 4),
        "ci95_low": round(float(low), 4),
        "ci95_high": round(float(high), 4),
    }


def missed_at_budget(labels: np.ndarray, scores: np.ndarray) -> str:
    estimate = miss_rate_at_false_detection(labels, scores, FDR_BUDGET)
    return f"{estimate.k}/{estimate.n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="<name>-test-scores.json of the run to beat")
    parser.add_argument("candidate", type=Path, help="<name>-test-scores.json of the run judged")
    args = parser.parse_args()
    base, cand = load_cells(args.baseline), load_cells(args.candidate)
    if [c["relpath"] for c in base] != [c["relpath"] for c in cand]:
        raise SystemExit("the runs were scored on other test cells: they must share one source home's split")
    labels = np.array([int(c["label"]) for c in base])
    base_scores, cand_scores = (np.array([float(c["score"]) for c in run]) for run in (base, cand))
    agreed = np.array([c["defect_probability"] in (0.0, 1.0) for c in base])
    print(
        json.dumps(
            {
                "baseline": args.baseline.name.removesuffix("-test-scores.json"),
                "candidate": args.candidate.name.removesuffix("-test-scores.json"),
                "test_auroc": auroc_gain(labels, base_scores, cand_scores),
                "unanimous_auroc": auroc_gain(labels[agreed], base_scores[agreed], cand_scores[agreed]),
                "missed_at_10pct_fdr": {
                    "baseline": missed_at_budget(labels, base_scores),
                    "candidate": missed_at_budget(labels, cand_scores),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
