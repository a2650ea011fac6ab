"""`inspection stats`: the numbers behind GET /v1/stats as tables (or the same JSON with --json)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from cli.common import console, pct, settings_from_env
from inspection.errors import InspectionError

BUCKET_CHOICES = ("hour", "shift", "day")


def _moment(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or datetime (UTC unless it carries an offset), or a clear error."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InspectionError(f"--{name} must be an ISO 8601 date or datetime, got {text!r}") from None


def _rate_cell(rate: dict[str, Any]) -> str:
    low, high = rate["ci95"]
    if rate["rate"] is None:
        return f"n/a (n={rate['n']})"
    return f"{pct(rate['rate'])} [{pct(low)}–{pct(high)}] {rate['k']}/{rate['n']}"


def _types_cell(per_type: dict[str, int]) -> str:
    # Already sorted most frequent first: the head of the Pareto is what a manager acts on.
    return ", ".join(f"{name} {count}" for name, count in per_type.items()) or "-"


def _table(title: str, group: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    table.add_column(group)
    for column in ("n", "defects", "defect rate", "miss rate [95%] k/n", "false detections [95%] k/n", "types"):
        table.add_column(column, justify="left" if column == "types" else "right")
    for label, block in rows:
        qa = block["qa"]
        table.add_row(
            label,
            str(block["n"]),
            str(block["n_defect"]),
            pct(block["defect_rate"]),
            _rate_cell(qa["miss_rate"]),
            _rate_cell(qa["false_detection_rate"]),
            _types_cell(block["per_type"]),
        )
    return table


def print_stats(result: dict[str, Any]) -> None:
    """Totals, per product, per line and per bucket as tables, then the small-sample warnings."""
    filters = result["filters"]
    scope = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None and k != "shift_starts") or "all"
    console.print(_table(f"inspections ({scope})", "scope", [("total", result["totals"])]))
    if result["totals"]["n"] == 0:
        console.print("no inspections match these filters")
        return
    console.print(_table("by product", "product", list(result["by_product"].items())))
    console.print(_table("by line", "line", list(result["by_line"].items())))
    if "buckets" in result:
        rows = [(bucket["start"], bucket) for bucket in result["buckets"]]
        console.print(_table(f"by {filters['bucket']} (UTC start)", filters["bucket"], rows))
    # Warnings for the totals and each line only: per-bucket ones would drown them, and buckets show n anyway.
    groups = [("total", result["totals"]), *((f"line {k}", v) for k, v in result["by_line"].items())]
    for name, block in groups:
        if block["qa"]["warning"]:
            console.print(f"[yellow]warning[/] ({name}): {block['qa']['warning']}")


def stats_cmd(
    product: Annotated[str | None, typer.Option(help="Only this product.")] = None,
    line: Annotated[str | None, typer.Option(help="Only this line id.")] = None,
    since: Annotated[str | None, typer.Option(help="Inclusive start, ISO 8601 (UTC without an offset).")] = None,
    until: Annotated[str | None, typer.Option(help="Exclusive end, ISO 8601 (UTC without an offset).")] = None,
    bucket: Annotated[str | None, typer.Option(help="Also group by UTC hour, shift or day.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw statistics object instead.")] = False,
) -> None:
    """Defect counts and rates, and the QA-measured miss and false-detection rates with 95% intervals."""
    from inspection.storage.database import open_database
    from inspection.storage.defect_stats import Bucket, compute_stats

    if bucket is not None and bucket not in BUCKET_CHOICES:
        raise InspectionError(f"--bucket must be one of {', '.join(BUCKET_CHOICES)}, got {bucket!r}")
    start, end = _moment(since, "since"), _moment(until, "until")
    sessions = open_database(settings_from_env().resolved_database_url)
    result = compute_stats(
        sessions, product=product, line_id=line, since=start, until=end, bucket=cast(Bucket | None, bucket)
    )
    if as_json:
        # Plain echo, not rich: rich wraps long lines at the terminal width, which would break the JSON.
        typer.echo(json.dumps(result, indent=2))
    else:
        print_stats(result)
