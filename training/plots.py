"""Evaluation figures: ROC curve with the operating point, and the confusion matrix. PNG, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from numpy.typing import ArrayLike

# Headless: training runs on servers and in CI with no display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from inspection.atomic import atomic_target
from inspection.metrics import auroc, false_detection_rate, miss_rate, roc_curve

DPI = 110


def _save_atomically(fig: Figure, path: Path) -> Path:
    """Write the figure to a temp file beside `path`, then rename, so readers never see half a PNG."""
    try:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _rate_text(name: str, k: int, n: int, rate: float | None) -> str:
    return f"{name}: unknown (n=0)" if rate is None else f"{name}: {rate:.1%} ({k}/{n})"


def plot_roc(labels: ArrayLike, scores: ArrayLike, threshold: float, path: Path, title: str) -> Path:
    """Plot the ROC curve with AUROC and mark the operating point at `threshold`; returns the PNG path."""
    fpr, tpr, _ = roc_curve(labels, scores)
    area = auroc(labels, scores)
    missed = miss_rate(labels, scores, threshold)
    flagged = false_detection_rate(labels, scores, threshold)

    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    if area is None:
        # One class only: the curve is undefined, say so rather than draw a misleading line.
        ax.text(0.5, 0.5, "ROC undefined:\nonly one class present", ha="center", va="center")
    else:
        ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC (AUROC = {area:.3f})")
        # Operating point in ROC coordinates: x = false-detection rate, y = 1 - miss rate.
        x = flagged.rate if flagged.rate is not None else 0.0
        y = 1.0 - missed.rate if missed.rate is not None else 0.0
        ax.scatter([x], [y], color="tab:red", zorder=3, s=50, label=f"threshold = {threshold:.4g}")
        text = "\n".join(
            [
                _rate_text("miss rate", missed.k, missed.n, missed.rate),
                _rate_text("false detections", flagged.k, flagged.n, flagged.rate),
            ]
        )
        # Keep the annotation inside the axes whichever corner the point sits in.
        ax.annotate(
            text,
            xy=(x, y),
            xytext=(0.35, 0.25),
            textcoords="axes fraction",
            fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "ec": "0.6"},
            arrowprops={"arrowstyle": "->", "color": "0.3"},
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-detection rate (good parts flagged)")
    ax.set_ylabel("1 - miss rate (defective parts caught)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.3)
    return _save_atomically(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Plot counts per (true, predicted) cell, coloured by the fraction of each true class; returns the path."""
    counts = np.asarray(matrix)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"matrix shape {counts.shape} does not match {len(classes)} classes")
    row_sums = counts.sum(axis=1, keepdims=True)
    # Row-normalised so a rare defect type's errors are as visible as the common class's.
    fractions = np.divide(counts, row_sums, out=np.zeros(counts.shape, float), where=row_sums > 0)

    size = max(4.0, 1.0 + 0.7 * len(classes))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if fractions[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=colour, fontsize=10)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return _save_atomically(fig, path)
