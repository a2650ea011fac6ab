"""`inspection db ...`: the database schema, for a deployment's one-off migration step (a Kubernetes Job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from cli.common import console, settings_from_env
from inspection.errors import InspectionError

db_app = typer.Typer(help="The inspections database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade_cmd() -> None:
    """Migrate INSPECTION_DATABASE_URL to the newest schema (safe beside replicas that start at the same time)."""
    from alembic.runtime.migration import MigrationContext

    from inspection.storage.database import make_engine, upgrade_schema

    engine = make_engine(settings_from_env().resolved_database_url)
    try:
        upgrade_schema(engine)
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    console.print(f"database schema at revision {revision}")


def _utc_moment(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or datetime (UTC unless it carries an offset), or a clear error."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InspectionError(f"--{name} must be an ISO 8601 date or datetime, got {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@db_app.command("rollups")
def db_rollups_cmd(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Recount the hourly rollups from the rows")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Compare the rollups with a recount; exit 1 if they differ")
    ] = False,
    since: Annotated[str | None, typer.Option(help="First hour to rebuild (default: the oldest row's)")] = None,
    until: Annotated[
        str | None, typer.Option(help="End of the rebuild, exclusive (default: after the newest row)")
    ] = None,
) -> None:
    """Rebuild the hourly rollups from the rows (after a bulk load or a restore), or check them against a recount.

    Hours whose rows retention has pruned keep their rollups only if --since starts after them: a rebuild there
    would count only the rows retention kept.
    """
    from inspection.progress import progress_task
    from inspection.storage.database import open_database
    from inspection.storage.minute_counts import KEEP_DAYS, minute_differences, rebuild_minute_counts
    from inspection.storage.retention import rebuild_start
    from inspection.storage.rollups import rebuild_rollups, recount_differences

    if not rebuild and not check:
        raise InspectionError("say --rebuild, --check or both")
    sessions = open_database(settings_from_env().resolved_database_url)
    try:
        if rebuild:
            start, end = _utc_moment(since, "since"), _utc_moment(until, "until")
            pruned_until = rebuild_start(sessions)
            if pruned_until is not None and (start is None or start < pruned_until):
                # Before this, retention removed rows: their rollups are the only count left.
                console.print(f"rebuilding from {pruned_until:%Y-%m-%d %H:%M} UTC (retention pruned the hours before)")
                start = pruned_until
            with progress_task("rebuilding rollups (days)") as advance:
                cells = rebuild_rollups(sessions, since=start, until=end, on_step=lambda *_: advance(1))
            console.print(f"rollups rebuilt: {cells} cells")
            minutes = rebuild_minute_counts(sessions)
            console.print(f"throughput minutes of the last {KEEP_DAYS} days recounted: {minutes} cells")
        if check:
            differences = recount_differences(sessions, since=rebuild_start(sessions))
            for key, rolled, recounted in differences[:20]:
                console.print(f"differs: {key}: rollups {rolled}, rows {recounted}")
            # The minute counts of the last day (older ones are pruned by age, whatever the rows).
            minute_gaps = minute_differences(sessions, since=datetime.now(UTC) - timedelta(days=KEEP_DAYS - 1))
            for minute_key, kept, recounted in minute_gaps[:20]:
                console.print(f"differs: minute {minute_key}: counts {kept}, rows {recounted}")
            if differences or minute_gaps:
                raise typer.Exit(1)
            console.print("rollups and minute counts equal a recount from the rows")
    finally:
        sessions.kw["bind"].dispose()


@db_app.command("retention")
def db_retention_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing")] = False,
    product: Annotated[str | None, typer.Option(help="One product (default: every product with stored rows)")] = None,
) -> None:
    """Remove rows and archived frames past each product's `retention` (configs/products/<p>.yaml); the rollups,
    and so every statistic, stay. Meant for a schedule (a CronJob, a timer); --dry-run first says what goes."""
    from sqlalchemy import distinct, select

    from inspection.frame_archive import open_archive
    from inspection.product_config import load_product_config
    from inspection.progress import progress_task
    from inspection.storage.database import open_database
    from inspection.storage.retention import apply_retention
    from inspection.storage.schema import InspectionRollup

    settings = settings_from_env()
    sessions = open_database(settings.resolved_database_url)
    archive = open_archive(settings)
    try:
        if product is not None:
            products = [product]
        else:
            with sessions() as session:
                products = sorted(session.scalars(select(distinct(InspectionRollup.product))))
        if product is None:
            # PostgreSQL: whole days past every product's retention go as partitions first (a DROP, not a delete
            # per row); what is left, and every day on SQLite, goes in the batch deletes below.
            from inspection.storage.partitions import drop_expired_partitions, ensure_partitions

            ensure_partitions(sessions.kw["bind"])
            policies = {name: load_product_config(settings.configs_dir, name).retention for name in products}
            for dropped in drop_expired_partitions(sessions, policies, archive.delete, dry_run=dry_run):
                verb = "would drop" if dry_run else "dropped"
                rows = ", ".join(f"{name} {n}" for name, n in sorted(dropped.rows.items())) or "no rows"
                console.print(f"{verb} the partition of {dropped.day} ({rows}; {dropped.frames} archived files)")
        for name in products:
            policy = load_product_config(settings.configs_dir, name).retention
            if policy.pass_days is None:
                console.print(f"{name}: no retention set, everything kept")
                continue
            with progress_task(f"{name}: removing rows past retention") as advance:
                outcome = apply_retention(sessions, name, policy, archive.delete, dry_run=dry_run, on_batch=advance)
            verb = "would remove" if dry_run else "removed"
            defects = f"after {policy.defect_days} days" if policy.defect_days else "kept"
            audited = f"after {policy.audited_days} days" if policy.audited_days else "kept"
            console.print(
                f"{name}: {verb} {outcome.rows} rows and {outcome.frames} archived files"
                f" (passes before {outcome.complete_from:%Y-%m-%d %H:%M} UTC; defects {defects},"
                f" audited {audited}, unlabelled audit picks kept {policy.unreviewed_audit_days}"
                " days); rollups untouched"
            )
    finally:
        sessions.kw["bind"].dispose()
