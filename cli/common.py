"""Shared pieces of the `inspection` command: the output console, settings, and report printing."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from inspection.settings import Settings, load_settings

# Results (tables, reports) go to stdout so they can be piped; progress and logs go to stderr.
console = Console()


def settings_from_env() -> Settings:
    """Settings from INSPECTION_* environment variables."""
    return load_settings()


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def print_report(report: dict[str, Any]) -> None:
    test = report["test"]
    table = Table(title=f"{report['product']} v{report['model_version']} on {report['data']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("95% interval / n", justify="right")
    ci = test["miss_rate_ci95"]
    table.add_row("miss rate", pct(test["miss_rate"]), f"{pct(ci[0])}–{pct(ci[1])}, n={test['n_defect']}")
    ci = test["false_detection_rate_ci95"]
    table.add_row(
        "false-detection rate", pct(test["false_detection_rate"]), f"{pct(ci[0])}–{pct(ci[1])}, n={test['n_good']}"
    )
    table.add_row("AUROC", "n/a" if test["auroc"] is None else f"{test['auroc']:.4f}", "")
    table.add_row("accuracy", pct(test["accuracy"]), f"n={test['n_good'] + test['n_defect']}")
    if report.get("target_false_detection_rate") is not None:
        target = f"false-detection budget {pct(report['target_false_detection_rate'])}"
    else:
        target = f"target miss {pct(report['target_miss_rate'])}"
    table.add_row("threshold", f"{report['threshold']:.4f}", target)
    for name, row in test["per_defect_type"].items():
        table.add_row(f"  miss rate: {name}", pct(row["miss_rate"]), f"n={row['n']}")
    # Where the defect is, for models that give a map and datasets that have masks.
    for key, label in (("pixel_auroc", "pixel AUROC"), ("pro", "PRO (per-region overlap)")):
        if test.get(key) is not None:
            table.add_row(label, f"{test[key]:.4f}", f"{test.get('n_pixel_images', '?')} images with masks")
    console.print(table)
    points = Table(title="operating points (thresholds chosen on validation)")
    for column in ("operating point", "threshold", "miss rate", "false detections", "accuracy"):
        points.add_column(column, justify="left" if column == "operating point" else "right")
    for name, point in report.get("operating_points", {}).items():
        points.add_row(
            name.replace("_", " "),
            f"{point['threshold']:.4f}",
            pct(point["miss_rate"]),
            pct(point["false_detection_rate"]),
            pct(point["accuracy"]),
        )
    console.print(points)
    _print_components(report)
    _print_recent(report)


def _print_components(report: dict[str, Any]) -> None:
    """A hybrid's parts beside the whole on the test split (miss rates at 10% false detections)."""
    if not report.get("components"):
        return
    table = Table(title="hybrid against its parts (test split)")
    for column in ("scorer", "AUROC", "miss rate at 10% false detections"):
        table.add_column(column, justify="left" if column == "scorer" else "right")
    for name, row in report["components"].items():
        auroc = "n/a" if row["auroc"] is None else f"{row['auroc']:.4f}"
        table.add_row(name, auroc, pct(row["miss_rate_at_10pct_fdr"]))
    console.print(table)


def _print_recent(report: dict[str, Any]) -> None:
    """The recent line data slice, beside (never inside) the frozen test split."""
    recent = report.get("recent_line_data")
    if not recent:
        return
    console.print(
        f"recent line data ({recent['n_defect']} defective, {recent['n_good']} good QA-reviewed frames kept out of "
        f"training): miss rate {pct(recent['miss_rate'])}, false-detection rate {pct(recent['false_detection_rate'])}"
    )
    for name, row in recent["per_defect_type"].items():
        console.print(f"  miss rate {name}: {pct(row['miss_rate'])} (n={row['n']})")
