"""A markdown model card per version: data, test-split metrics with intervals, threshold, and known limits.

The "Known limits" section is derived from the numbers, so a card never claims more than its sample sizes allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspection.atomic import write_atomic_text
from inspection.operating_curve import CalibrationTarget
from inspection.report import EvaluationReport, Interval

# Below this many test examples a per-type miss rate is mostly noise (its Wilson interval spans tens of points).
MIN_TYPE_EXAMPLES = 30
# An interval wider than this (10 percentage points) is too loose to compare or promote on.
MAX_CI_WIDTH = 0.10


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _ci(ci: Interval | None) -> str:
    return "n/a" if not ci else f"{_pct(ci[0])}–{_pct(ci[1])}"


def _calibration(report: EvaluationReport, info: dict[str, Any]) -> dict[str, Any]:
    found = report.calibration or info.get("calibration") or {}
    return found if isinstance(found, dict) else {}


def _data_section(report: EvaluationReport, info: dict[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    counts = info.get("label_counts") or {}
    if counts:
        lines += ["| label | images |", "|---|---:|"]
        lines += [f"| {label} | {n} |" for label, n in counts.items()]
        lines += [f"| **total** | {sum(counts.values())} |", ""]
    splits = info.get("split_counts") or {}
    if splits:
        lines.append("Splits (frozen, seeded, stratified): " + ", ".join(f"{k} {v}" for k, v in splits.items()) + ".")
    lines += [f"Metrics below are on: {report.data} (never used for training).", ""]
    return lines


def _metrics_section(report: EvaluationReport) -> list[str]:
    test = report.test
    n_all = test.n_good + test.n_defect
    auroc = test.auroc
    lines = [
        "## Test metrics",
        "",
        "| figure | value | 95% interval (Wilson) | n |",
        "|---|---:|---:|---:|",
        f"| miss rate | {_pct(test.miss_rate)} | {_ci(test.miss_rate_ci95)} | {test.n_defect} |",
        f"| false-detection rate | {_pct(test.false_detection_rate)} | "
        f"{_ci(test.false_detection_rate_ci95)} | {test.n_good} |",
        f"| AUROC | {'n/a' if auroc is None else f'{auroc:.4f}'} |  | {n_all} |",
        f"| accuracy | {_pct(test.accuracy)} |  | {n_all} |",
        "",
    ]
    per_type = test.per_defect_type
    if per_type:
        lines += [
            "### Miss rate per defect type",
            "",
            "| defect type | n | miss rate | 95% interval |",
            "|---|---:|---:|---:|",
        ]
        for name, row in per_type.items():
            lines.append(f"| {name} | {row.n} | {_pct(row.miss_rate)} | {_ci(row.miss_rate_ci95)} |")
        lines.append("")
    points = report.operating_points
    if points:
        lines += [
            "### Operating points (thresholds chosen on validation, rates on test)",
            "",
            "| operating point | threshold | miss rate | false-detection rate | accuracy |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, p in points.items():
            lines.append(
                f"| {name.replace('_', ' ')} | {p.threshold:.4f} | {_pct(p.miss_rate)} | "
                f"{_pct(p.false_detection_rate)} | {_pct(p.accuracy)} |"
            )
        lines.append("")
    return lines


def _components_section(report: EvaluationReport) -> list[str]:
    """A hybrid's parts next to the whole on the test split, at one operating point for all."""
    components = report.extras.get("components")
    if not components:
        return []
    lines = [
        "### Hybrid against its parts (test split)",
        "",
        "| scorer | AUROC | miss rate at 10% false detections |",
        "|---|---:|---:|",
    ]
    for name, row in components.items():
        auroc = "n/a" if row["auroc"] is None else f"{row['auroc']:.4f}"
        lines.append(f"| {name} | {auroc} | {_pct(row['miss_rate_at_10pct_fdr'])} |")
    return [*lines, ""]


def _recent_section(report: EvaluationReport) -> list[str]:
    """The recent line data slice (QA-reviewed frames kept out of training), beside the frozen test split."""
    recent = report.recent_line_data
    if not recent:
        return []
    return [
        "### Recent line data",
        "",
        f"{recent.data}: {recent.n_defect} defective and {recent.n_good} good frames; miss rate "
        f"{_pct(recent.miss_rate)} ({_ci(recent.miss_rate_ci95)}), false-detection rate "
        f"{_pct(recent.false_detection_rate)} ({_ci(recent.false_detection_rate_ci95)}).",
        "",
    ]


def report_target(report: EvaluationReport) -> CalibrationTarget:
    """The calibration target a report was made under (a miss rate or a false-detection budget)."""
    return CalibrationTarget.from_fields(report.target_miss_rate, report.target_false_detection_rate)


def _threshold_section(report: EvaluationReport, info: dict[str, Any]) -> list[str]:
    calibration = _calibration(report, info)
    target = f"calibrated on the validation split for {report_target(report).describe()}"
    anomaly, hybrid = report.extras.get("anomaly"), report.extras.get("hybrid")
    if anomaly:  # the distance is what was calibrated; the export maps it onto a probability with 0.5 at it
        first = (
            f"Distance threshold **{report.threshold:.4f}** (a part is flagged when its largest patch distance "
            f"to the good-part memory bank is at or above it), {target}. The served model reports "
            f"sigmoid((distance - threshold) / {anomaly['score_scale']:.4f}) as its defect probability, so its "
            f"served threshold is {anomaly['served_threshold']}."
        )
    elif hybrid:
        fusion = hybrid["fusion"]
        first = (
            f"Fused threshold **{fusion['threshold']:.4f}** on the fused score {fusion['classifier_weight']:.3f} x "
            f"classifier z + {1 - fusion['classifier_weight']:.3f} x anomaly z (each z measured in spreads of good "
            f"validation parts), {target}. The served model reports sigmoid(fused - threshold) as its defect "
            f"probability, so its served threshold is {hybrid['served_threshold']}."
        )
    else:
        first = (
            f"Serving threshold **{report.threshold:.4f}** (a part is flagged when its defect score is at or "
            f"above it), {target}."
        )
    lines = ["## Threshold", "", first]
    if calibration.get("note"):
        lines.append(f"How it was chosen: {calibration['note']}.")
    curve = report.operating_curve
    if curve is not None:
        lines.append(
            f"The report's `operating_curve` gives the miss and false-detection rates at every served threshold on "
            f"validation and test ({len(curve.test)} test points); `inspection models threshold` moves the served "
            "threshold along it, on the validation evidence, and records who did it and why."
        )
    lines.append("")
    return lines


def known_limits(report: EvaluationReport, info: dict[str, Any]) -> list[str]:
    """Plain-language limits read off the numbers (small samples, wide intervals, calibration fallbacks)."""
    test = report.test
    limits = []
    for rate, n, images, ci in (
        ("miss rate", test.n_defect, "defective", test.miss_rate_ci95),
        ("false-detection rate", test.n_good, "good", test.false_detection_rate_ci95),
    ):
        low, high = ci
        if n == 0:
            limits.append(f"The test split has no {images} images: the {rate} is unknown.")
        elif low is not None and high is not None and high - low > MAX_CI_WIDTH:
            limits.append(
                f"The {rate}'s 95% interval is {100 * (high - low):.1f} points wide (n={n} {images} test "
                f"images): more {images} test images are needed to pin it down."
            )
    for name, row in test.per_defect_type.items():
        if row.n < MIN_TYPE_EXAMPLES:
            limits.append(
                f"Defect type `{name}` has only {row.n} test examples (< {MIN_TYPE_EXAMPLES}): "
                "too few examples to trust this type's miss rate."
            )
    calibration = _calibration(report, info)
    if calibration.get("method") == "good_quantile":
        limits.append(
            "Threshold calibration fell back to a percentile of good scores (the validation split had no "
            "defective images), so the threshold does not control the miss rate."
        )
    target, missed, flagged = report_target(report), test.miss_rate, test.false_detection_rate
    if target.metric == "miss_rate" and missed is not None and missed > target.value:
        limits.append(f"The test miss rate {_pct(missed)} is above the calibration target {_pct(target.value)}.")
    if target.metric == "false_detection_rate" and flagged is not None and flagged > target.value:
        limits.append(
            f"The test false-detection rate {_pct(flagged)} is above the calibration budget {_pct(target.value)}."
        )
    if test.auroc is None:
        limits.append("AUROC is undefined: the test split lacks good or defective images.")
    return limits


def render_model_card(report: EvaluationReport, info: dict[str, Any]) -> str:
    """The card's markdown text."""
    lines = [f"# Model card: {report.product} v{report.model_version}", ""]
    if info.get("run_id"):
        lines += [f"MLflow run `{info['run_id']}`.", ""]
    lines += _data_section(report, info) + _metrics_section(report) + _components_section(report)
    lines += _recent_section(report) + _threshold_section(report, info)
    lines += ["## Known limits", ""]
    limits = known_limits(report, info)
    lines += [f"- {limit}" for limit in limits] or [
        "- None read off the numbers; they describe data like this test split only."
    ]
    return "\n".join(lines) + "\n"


def write_model_card(report: EvaluationReport, info: dict[str, Any], path: Path) -> Path:
    """Write the card atomically (temp file + rename): readers see the old card or the new one, never half."""
    return write_atomic_text(path, render_model_card(report, info))
