"""`inspection audit P`: show a product's audit rates, or set them (with who and why)."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, settings_from_env
from inspection.errors import InspectionError


def _band(text: str) -> dict[str, float]:
    """'LO:HI=RATE' (e.g. '0.5:1=0.2') as a pass band."""
    try:
        span, rate = text.split("=", 1)
        lo, hi = span.split(":", 1)
        return {"lo": float(lo), "hi": float(hi), "rate": float(rate)}
    except ValueError as exc:
        raise InspectionError(f"band {text!r} is not LO:HI=RATE (e.g. 0.5:1=0.2)") from exc


def audit_cmd(
    product: Annotated[str, typer.Argument(help="The product")],
    pass_rate: Annotated[float | None, typer.Option("--pass-rate", help="Share of passes drawn for QA's audit")] = None,
    defect_rate: Annotated[
        float | None, typer.Option("--defect-rate", help="Share of defect verdicts drawn for QA's audit")
    ] = None,
    band: Annotated[
        list[str] | None,
        typer.Option(
            "--band",
            help="LO:HI=RATE over a pass's score / threshold, repeated to cover 0 to 1 (passes near the threshold "
            "audited more, e.g. --band 0:0.5=0.02 --band 0.5:1=0.2)",
        ),
    ] = None,
    no_bands: Annotated[bool, typer.Option("--no-bands", help="Remove the pass bands (back to --pass-rate)")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with who)")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who sets it (default: the login name)")] = None,
) -> None:
    """Show the audit rates in force and their history; with --pass-rate, --defect-rate or --band, set them."""
    from inspection.audit_change import change_audit_rates
    from inspection.names import validate_product_name
    from inspection.storage.audit_settings import audit_history, audit_setting_in_force
    from inspection.storage.database import open_database
    from models.registry import registered_products

    settings = settings_from_env()
    validate_product_name(product)
    if product not in registered_products(settings):
        raise InspectionError(f"no registered product {product!r} (train it first: inspection train {product})")
    sessions = open_database(settings.resolved_database_url)
    changes: dict[str, Any] = {}
    if pass_rate is not None:
        changes["pass_rate"] = pass_rate
    if defect_rate is not None:
        changes["defect_rate"] = defect_rate
    if band:
        changes["pass_bands"] = [_band(text) for text in band]
    elif no_bands:
        changes["pass_bands"] = None
    if changes:
        setting = change_audit_rates(
            sessions, settings.configs_dir, product, changes, by=by or getpass.getuser(), reason=reason or ""
        )
        console.print(f"{product}: audit rates now {setting.policy.describe()} (set by {setting.set_by})")
        console.print("running servers draw at them from their next model poll")
        return
    setting = audit_setting_in_force(sessions, settings.configs_dir, product)
    console.print(f"{product}: {setting.policy.describe()} ({setting.source})")
    history = audit_history(sessions, product)
    if history:
        table = Table(title="changes, newest first")
        for column in ("set at", "by", "rates", "reason"):
            table.add_column(column)
        for entry in history:
            when = entry.set_at.isoformat(timespec="seconds") if entry.set_at else ""
            table.add_row(when, entry.set_by or "", entry.policy.describe(), entry.reason or "")
        console.print(table)
