"""The demo's rates three ways, side by side: the server's audit estimate of the line, the rate among the frames QA
labelled (the review queue's bias shows here), and the truth, which only the demo knows (it holds every frame's
true label)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from cli.common import console, pct

GOOD = "good"
RATES = (
    ("miss rate", "miss_rate"),
    ("false-detection rate", "false_detection_rate"),
    ("escaped defects", "escaped_defects_ppm"),
)


@dataclass(frozen=True)
class Truth:
    """What the demo knows of one pass: its answered frames' verdicts against their true labels."""

    defective: int
    missed: int
    good: int
    flagged_good: int
    passed: int

    def rate(self, key: str) -> float | None:
        """The true value of a rate named as in the stats' audit block."""
        counts = {
            "miss_rate": (self.missed, self.defective),
            "false_detection_rate": (self.flagged_good, self.good),
            "escaped_defects_ppm": (self.missed * 1_000_000, self.passed),
        }
        k, n = counts[key]
        return k / n if n else None


def pass_truth(results: list[Any], labels: dict[str, str]) -> Truth:
    """The true rates of the frames the server answered in one pass, from the demo's true labels."""
    answered = [(r.verdict, labels[Path(r.frame_id).name]) for r in results if r.inspection_id is not None]
    defective = [verdict for verdict, label in answered if label != GOOD]
    good = [verdict for verdict, label in answered if label == GOOD]
    return Truth(
        defective=len(defective),
        missed=defective.count("pass"),
        good=len(good),
        flagged_good=good.count("defect"),
        passed=sum(verdict == "pass" for verdict, _ in answered),
    )


def _ppm(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ppm"


def _fmt(key: str, value: float | None) -> str:
    return _ppm(value) if key == "escaped_defects_ppm" else pct(value)


def audit_cell(audit: dict[str, Any], key: str) -> str:
    """An audit estimate with its 95% interval, or why there is none."""
    rate = audit[key]
    if rate["estimate"] is None:
        return "not estimable"
    low, high = rate["ci95"]
    return f"{_fmt(key, rate['estimate'])} ({_fmt(key, low)}–{_fmt(key, high)})"


def qa_cell(qa: dict[str, Any], key: str) -> str:
    """The rate among QA-labelled frames with its k/n (the stats give none for escapes per million)."""
    if key not in qa:
        return "-"
    rate = qa[key]
    return f"{pct(rate['rate'])}, {rate['k']}/{rate['n']}"


def print_pass_rates(product: str, point: str, stats: dict[str, Any], truth: Truth) -> None:
    """One pass's table: each rate as the audit estimates it, as QA's labelled frames show it, and as it truly was."""
    block = stats["totals"]
    audit, qa = block["audit"], block["qa"]
    table = Table(title=f"{product} at {point}: the line's rates three ways")
    table.add_column("rate")
    table.add_column("audit estimate (95% CI)", justify="right")
    table.add_column("of QA-labelled frames", justify="right")
    table.add_column("truth (all frames)", justify="right")
    for name, key in RATES:
        table.add_row(name, audit_cell(audit, key), qa_cell(qa, key), _fmt(key, truth.rate(key)))
    # The share flagged is counted from every answer, not estimated: it belongs with the truth, not the audit.
    table.add_row("flagged as defect", "", "", f"{pct(block['defect_rate'])} of {block['n']} frames")
    console.print(table)
    console.print(
        f"audit: {audit['n_audited']} of {audit['n_selected']} drawn frames labelled, backlog {audit['backlog']}; "
        f"QA labelled {qa['n_reviewed']} frames in all",
        highlight=False,
    )
    if audit["warning"]:
        console.print(f"[yellow]audit:[/] {audit['warning']}", highlight=False)


def comparison_table(product: str, points: list[tuple[str, float | None, dict[str, Any], Truth]]) -> Table:
    """Both passes side by side: (operating point, served threshold, that pass's /v1/stats, its truth)."""
    table = Table(title=f"{product}: the two operating points on the line (audit estimate | QA-labelled | truth)")
    for column in ("operating point", "threshold", "miss rate", "false-detection rate", "flagged"):
        table.add_column(column, justify="left" if column == "operating point" else "right")
    for name, threshold, stats, truth in points:
        block = stats["totals"]
        cells = [
            f"{audit_cell(block['audit'], key)}\n{qa_cell(block['qa'], key)}\ntruth {pct(truth.rate(key))}"
            for key in ("miss_rate", "false_detection_rate")
        ]
        shown = "-" if threshold is None else f"{threshold:.4f}"
        table.add_row(name, shown, *cells, f"{pct(block['defect_rate'])} of {block['n']}")
    return table
