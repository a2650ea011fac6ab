"""Bringing a test database to an older schema revision, to play a server of that version."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from inspection.storage.database import MIGRATIONS


def upgrade_to(engine: Engine, revision: str) -> None:
    """Run the project's migrations on `engine` up to `revision` (not to the head)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
