"""`inspection db ...`: the database schema, for a deployment's one-off migration step (a Kubernetes Job)."""

from __future__ import annotations

from datetime import UTC, datetime
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
    from inspection.storage.rollups import rebuild_rollups, recount_differences

    if not rebuild and not check:
        raise InspectionError("say --rebuild, --check or both")
    sessions = open_database(settings_from_env().resolved_database_url)
    try:
        if rebuild:
            start, end = _utc_moment(since, "since"), _utc_moment(until, "until")
            with progress_task("rebuilding rollups (days)") as advance:
                cells = rebuild_rollups(sessions, since=start, until=end, on_step=lambda *_: advance(1))
            console.print(f"rollups rebuilt: {cells} cells")
        if check:
            differences = recount_differences(sessions)
            for key, rolled, recounted in differences[:20]:
                console.print(f"differs: {key}: rollups {rolled}, rows {recounted}")
            if differences:
                raise typer.Exit(1)
            console.print("rollups equal a recount from the rows")
    finally:
        sessions.kw["bind"].dispose()
