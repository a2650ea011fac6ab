"""`inspection models ...`: the per-product model registry (list, promote, rollback, threshold)."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.common import console, pct, settings_from_env
from inspection.names import validate_product_name
from inspection.settings import Settings

if TYPE_CHECKING:
    from models.threshold_moves import ThresholdPlan

models_app = typer.Typer(help="The per-product model registry.", no_args_is_help=True)


def shadow_evidence_text(settings: Settings, product: str, version: int | None) -> str:
    """The candidate's shadow comparison with the current champion on live frames, or "no shadow evidence"."""
    from inspection.storage.database import open_database
    from inspection.storage.shadow_scores import shadow_comparison
    from models import registry
    from models.promotion import rate_text

    candidate = registry.challenger(settings, product) if version is None else None
    version = version if version is not None else (candidate.version if candidate is not None else None)
    champion = registry.champion(settings, product)
    if version is None or (champion is not None and champion.version == version):
        return "no shadow evidence (no candidate other than the champion)"
    sessions = open_database(settings.resolved_database_url)
    found = shadow_comparison(sessions, product, version, champion.version if champion is not None else None)
    title = f"shadow evidence on live frames: candidate v{version}"
    if found.frames_shadowed == 0:
        return f"{title}: no shadow evidence (v{version} has scored no frame in shadow)"
    served = ",".join(f"v{v}" for v in found.served_versions)
    agreement = found.agreeing / found.frames_shadowed
    lines = [
        f"{title} against the served verdicts of {served}, since {found.since:%Y-%m-%d %H:%M} UTC"
        if found.since
        else title,
        f"  frames scored in shadow {found.frames_shadowed}, skipped {found.missing_shadow}, "
        f"verdicts agree on {pct(agreement)} ({found.agreeing} of {found.frames_shadowed})",
    ]
    data = found.to_dict()["qa"]
    width = len(f"candidate v{version}")
    head = f"{'QA-checked frames':<{max(width, 17)}}  {'miss rate (95% CI, n)':<32}  false-detection rate (95% CI, n)"
    lines.append("  " + head)
    for label, key in ((f"champion {served}", "champion"), (f"candidate v{version}", "challenger")):
        miss, fdr = data[key]["miss_rate"], data[key]["false_detection_rate"]
        miss_text = rate_text(miss["rate"], tuple(miss["ci95"]), miss["n"])
        fdr_text = rate_text(fdr["rate"], tuple(fdr["ci95"]), fdr["n"])
        lines.append(f"  {label:<{max(width, 17)}}  {miss_text:<32}  {fdr_text}")
    if found.warning:
        lines.append(f"  warning: {found.warning}")
    lines.append("  (shown, not gated: the gate below compares the frozen test split)")
    return "\n".join(lines)


@models_app.command("list")
def models_list_cmd(product: Annotated[str, typer.Argument(help="Product name.")]) -> None:
    """Registered versions with aliases, test miss and false-detection rates, and promotion history."""
    from models.promotion import evidence, promotion_log, rate_text
    from models.registry import list_versions
    from models.serving_choice import current_threshold, read_served_scores
    from models.threshold_moves import threshold_log

    settings = settings_from_env()
    validate_product_name(product)
    versions = list_versions(settings, product)
    if not versions:
        console.print(f"product {product} has no registered model: run `inspection train {product}`")
        return
    table = Table(title=f"models of {product} (rates on the frozen test split)")
    for column in ("version", "aliases", "miss rate (95% CI, n)", "false detections (95% CI, n)", "served threshold"):
        table.add_column(column)
    table.add_column("promoted")
    changes = []
    for info in versions:
        found = evidence(info)
        miss = fdr = "no report"
        if found is not None:
            miss = rate_text(found.miss_rate, found.miss_rate_ci95, found.n_defect)
            fdr = rate_text(found.false_detection_rate, found.false_detection_rate_ci95, found.n_good)
        promoted = ""
        if info.tags.get("promoted_at"):
            source = info.tags.get("promoted_from")
            promoted = info.tags["promoted_at"] + (f" from v{source}" if source else "")
            promoted += " FORCED" if info.tags.get("forced") == "true" else ""
        served = current_threshold(info, read_served_scores(info))
        # Versions trained before the curve was recorded serve the threshold in their ONNX file (the tag).
        threshold = info.tags.get("threshold", "") if served is None else f"{served.value:.4f}"
        if served is not None and served.source == "qa":
            threshold += f" (set by {served.set_by})"
            changes += [(info.version, entry) for entry in threshold_log(info)]
        table.add_row(str(info.version), ",".join(info.aliases), miss, fdr, threshold, promoted)
    console.print(table)
    for version, entry in sorted(changes, key=lambda change: str(change[1].get("at")))[-5:]:
        moved = " -> ".join(
            f"{x:.4f}" if isinstance(x, float) else str(x) for x in (entry.get("from"), entry.get("to"))
        )
        line = f"{entry.get('at')} threshold of v{version} {moved} ({entry.get('rule')}) by {entry.get('by')}"
        console.print(line + (f": {entry['reason']}" if entry.get("reason") else ""), markup=False, highlight=False)
    for entry in promotion_log(settings, product)[-5:]:
        forced = " (forced)" if entry.get("forced") else ""
        line = f"{entry.get('at')} {entry.get('action')} v{entry.get('from')} -> v{entry.get('to')}{forced}"
        console.print(line + (f": {entry['reason']}" if entry.get("reason") else ""), markup=False, highlight=False)


def _recent_slice(settings: Settings, product: str, version: int | None) -> str:
    """The champion and the candidate on the current recent slice (shown, like shadow evidence, not gated)."""
    from models.registry import challenger, champion
    from training.recent_slice import recent_slice_text

    current = champion(settings, product)
    candidate = version if version is not None else getattr(challenger(settings, product), "version", None)
    versions = [v for v in (getattr(current, "version", None), candidate) if v is not None]
    return recent_slice_text(settings, product, list(dict.fromkeys(versions)))


@models_app.command("promote")
def models_promote_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    version: Annotated[int | None, typer.Argument(help="Version to promote (default: the challenger).")] = None,
    force: Annotated[bool, typer.Option(help="Override the miss-rate gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why; mandatory with --force, recorded either way.")] = None,
) -> None:
    """Make a version the champion if its test miss rate is not worse than the champion's beyond its 95% CI.

    The challenger's shadow evidence on live frames is shown first; the gate itself stays the frozen test split.
    """
    from models.promotion import promote

    settings = settings_from_env()
    validate_product_name(product)
    console.print(shadow_evidence_text(settings, product, version), markup=False, highlight=False)
    console.print(_recent_slice(settings, product, version), markup=False, highlight=False)
    result = promote(settings, product, version, force=force, reason=reason)
    console.print(result.comparison, markup=False, highlight=False)
    if not result.changed:
        console.print(f"v{result.new_version} is already the champion of {product}; nothing changed")
        return
    previous = "none" if result.old_version is None else f"v{result.old_version}"
    forced = " (FORCED past the gate)" if result.forced else ""
    console.print(f"{product}: champion is now v{result.new_version} (was {previous}){forced}", markup=False)


@models_app.command("rollback")
def models_rollback_cmd(product: Annotated[str, typer.Argument(help="Product name.")]) -> None:
    """Restore the champion that served before the current one."""
    from models.promotion import rollback

    settings = settings_from_env()
    validate_product_name(product)
    result = rollback(settings, product)
    console.print(result.comparison, markup=False, highlight=False)
    console.print(f"{product}: champion is now v{result.new_version} (rolled back from v{result.old_version})")


def _point_text(point: dict[str, Any], rate: str, counted: str) -> str:
    """'4.00% (1.10–13.46%), 2 of 50': a rate with its Wilson 95% interval and the counts behind it."""
    from models.promotion import rate_text

    n = point["n_defect"] if rate == "miss_rate" else point["n_good"]
    k = point[counted]
    return rate_text(point[rate], tuple(point[f"{rate}_ci95"]), n).replace(f", n={n})", f"), {k} of {n}")


def threshold_table(plan: ThresholdPlan) -> Table:
    """The current and the new served threshold with their miss and false-detection rates on both splits."""
    table = Table(title=f"{plan.product} v{plan.version}: what the served threshold costs (Wilson 95% CI, k of n)")
    for column in (
        "",
        "threshold",
        "validation miss",
        "validation false detections",
        "test miss",
        "test false detections",
    ):
        table.add_column(column)
    current = plan.current
    label = "current (set by QA)" if current.source == "qa" else "current (calibrated)"
    for name, key, threshold in ((label, "current", current.value), ("new", "new", plan.threshold)):
        val, test = plan.validation[key], plan.test[key]
        table.add_row(
            name,
            f"{threshold:.4f}",
            _point_text(val, "miss_rate", "n_missed"),
            _point_text(val, "false_detection_rate", "n_false_detections"),
            _point_text(test, "miss_rate", "n_missed"),
            _point_text(test, "false_detection_rate", "n_false_detections"),
        )
    return table


@models_app.command("threshold")
def models_threshold_cmd(
    product: Annotated[str, typer.Argument(help="Product name.")],
    version: Annotated[int | None, typer.Option(help="Model version (default: the champion).")] = None,
    miss_rate: Annotated[
        float | None,
        typer.Option("--miss-rate", help="Highest threshold whose validation miss rate is <= this fraction."),
    ] = None,
    false_detection_rate: Annotated[
        float | None,
        typer.Option(
            "--false-detection-rate", help="Lowest threshold whose validation false-detection rate is <= this."
        ),
    ] = None,
    value: Annotated[float | None, typer.Option("--value", help="This served threshold, in (0, 1).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why the threshold moves (required; recorded).")] = None,
    by: Annotated[str | None, typer.Option(help="Who sets it (default: the OS user).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what it would cost; record nothing.")] = False,
) -> None:
    """Set the threshold a version serves, chosen on its validation split; every server applies it at its next
    registry poll. Refused (nothing recorded) when validation has too few parts to support the target: a rate R
    needs at least one expected error, n x R >= 1, among the validation parts of its class."""
    from models.threshold_moves import ThresholdRefused, ThresholdRequest, plan_threshold, record_threshold

    settings = settings_from_env()
    validate_product_name(product)
    request = ThresholdRequest(miss_rate, false_detection_rate, value)
    if not dry_run and not (reason or "").strip():
        raise ThresholdRefused("--reason is required: say why the served threshold moves; it is recorded")
    plan = plan_threshold(settings, product, request, version)
    console.print(
        f"{product} v{plan.version}: served threshold {plan.current.value:.4f} -> {plan.threshold:.4f}, "
        f"{request.describe()}",
        markup=False,
        highlight=False,
    )
    console.print(threshold_table(plan))
    if dry_run:
        console.print("dry run: nothing recorded")
        return
    entry = record_threshold(settings, plan, reason or "", by or getpass.getuser())
    console.print(
        f"recorded on {product} v{plan.version} at {entry['at']} by {entry['by']}: {entry['reason']}\n"
        f"every server serving v{plan.version} applies it at its next registry poll "
        f"(every {settings.model_poll_seconds:g} s)",
        markup=False,
        highlight=False,
    )
