"""Is one ELPV run better than another, or did the test split's sampling move it? From saved scores, no training.

    python -m tools.experiments.elpv_compare runs/defaults-s0-test-scores.json runs/gem-test-scores.json

Both files are `<name>-test-scores.json` of `tools.experiments.elpv_variant` runs on one source home's split.
Prints the candidate's test AUROC minus the baseline's with a paired, label-stratified bootstrap 95 % interval (the same
resampled cells score both runs, the INT8 gate's method), the same over the cells all annotators agreed on, and
the defects each run misses at 10 % false detections. An interval that holds 0 means the 525 test cells cannot
tell the two runs apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.elpv_training import FDR_BUDGET
from inspection.metrics import auroc, miss_rate_at_false_detection
from tools.experiments.elpv_ablations import unanimous_share
from tools.experiments.elpv_ensemble import aligned_runs
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
    label_list, probabilities, runs = aligned_runs([args.baseline, args.candidate])
    if len(runs) != 2:
        raise SystemExit("give two different runs")
    (base_name, base_list), (cand_name, cand_list) = runs.items()
    labels, base_scores, cand_scores = np.array(label_list), np.array(base_list), np.array(cand_list)
    agreed = np.array([unanimous_share(share) for share in probabilities])
    print(
        json.dumps(
            {
                "baseline": base_name,
                "candidate": cand_name,
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
