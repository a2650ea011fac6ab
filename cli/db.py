"""`inspection db ...`: the database schema, for a deployment's one-off migration step (a Kubernetes Job)."""

from __future__ import annotations

import typer

from cli.common import console, settings_from_env

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
