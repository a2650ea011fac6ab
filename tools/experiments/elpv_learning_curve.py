"""The ELPV classifier's learning curve (docs/elpv.md): the bench's figures against the share of the training split.

Each point is one `tools.experiments.elpv_variant` run, trained on a quarter, a half or all of the training split
(`--ablation training-quarter`, `training-half`, none) with a seed; validation and test are the same cells in all.

    python -m tools.experiments.elpv_variant --source-home H --name quarter-s0 --ablation training-quarter \
        > quarter-s0.json
    python -m tools.experiments.elpv_variant --source-home H --name full-s1 --override '{seed: 1}' > full-s1.json
    python -m tools.experiments.elpv_learning_curve quarter-s0.json half-s0.json full-s0.json ... --out curve.png

Each figure's distance from perfect (1 - AUROC, 1 - balanced accuracy, the miss rate at 10 % false detections)
is fitted as a power of the training share on the seeds' mean at each share (a straight line on log-log axes),
and the share of today's training split that would reach the goal if the line held is printed: an
extrapolation, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from tools.experiments.elpv_ablations import TRAINING_SHARES

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class Figure:
    key: str  # in elpv_variant's output
    title: str
    goal: float
    higher_is_better: bool  # AUROC and accuracy, whose distance from perfect is 1 - value; a miss rate is its own

    def distance(self, value: Any) -> Any:
        """Distance from perfect of a value (and back: the map is its own inverse)."""
        return 1.0 - value if self.higher_is_better else value


FIGURES = (
    Figure("elpv_test_auroc", "test AUROC", 0.97, True),
    Figure("elpv_test_balanced_accuracy", "balanced accuracy", 0.93, True),
    Figure("elpv_test_miss_rate_at_10pct_fdr", "miss rate at 10 % false detections", 0.10, False),
)


def training_share(run: dict[str, Any]) -> float:
    """The share of the training split a run trained on (1 without an ablation); ValueError for other ablations."""
    ablation = run.get("ablation")
    if ablation is None:
        return 1.0
    if ablation not in TRAINING_SHARES:
        raise ValueError(f"{run.get('name')}: ablation {ablation!r} is not a point of the learning curve")
    return TRAINING_SHARES[ablation]


def power_fit(shares: np.ndarray, errors: np.ndarray) -> tuple[float, float]:
    """(log2 error at share 1, its slope per doubling) of log2(error) = a + b log2(share), least squares."""
    slope, intercept = np.polyfit(np.log2(shares), np.log2(errors), 1)
    return float(intercept), float(slope)


def share_for(goal_error: float, intercept: float, slope: float) -> float | None:
    """The share at which the fitted line reaches `goal_error`; None when it does not fall with more data."""
    if slope >= 0:
        return None
    return float(2 ** ((math.log2(goal_error) - intercept) / slope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="elpv_variant outputs (its JSON line)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    runs = [json.loads(path.read_text().strip().splitlines()[-1]) for path in args.runs]
    shares = np.array([training_share(run) for run in runs])
    levels = np.unique(shares)
    if len(levels) < 2:
        raise SystemExit("a learning curve needs runs at two shares of the training split at least")
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(5 * len(FIGURES), 4))
    grid = np.geomspace(levels.min(), 4.0, 50)
    for axis, figure in zip(axes, FIGURES, strict=True):
        values = np.array([run[figure.key] for run in runs], dtype=float)
        means = np.array([figure.distance(values[shares == level]).mean() for level in levels])
        intercept, slope = power_fit(levels, means)
        needed = share_for(figure.distance(figure.goal), intercept, slope)
        points = ", ".join(f"{level:g}: {figure.distance(mean):.4f}" for level, mean in zip(levels, means, strict=True))
        reach = "never (it does not fall)" if needed is None else f"at {needed:.1f}x today's training split"
        print(
            f"{figure.title} by share (seeds' mean) {points}; the distance from perfect x{2**slope:.2f} a doubling; "
            f"the goal {figure.goal:g} {reach}"
        )
        axis.plot(shares, values, "o", alpha=0.6, label="runs (one a seed)")
        axis.plot(levels, figure.distance(means), "s", color="black", label="mean of the seeds")
        fitted = 2 ** (intercept + slope * np.log2(grid))
        axis.plot(grid, figure.distance(fitted), "--", color="gray", label="power-law fit, extrapolated")
        axis.axhline(figure.goal, color="tab:red", linewidth=1, label=f"goal {figure.goal:g}")
        axis.set_xscale("log", base=2)
        axis.set_xticks([0.25, 0.5, 1, 2, 4], ["1/4", "1/2", "1", "2", "4"])
        axis.set_xlabel("share of the training split")
        axis.set_title(figure.title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("ELPV: the classifier's figures against the amount of labeled training data")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
