"""Engines and schema migration: SQLite in WAL mode as the embedded default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
# The PostgreSQL advisory lock every migrating process takes first (any 64-bit number shared by all replicas;
# this one spells "inspmigr"). Other users of the database are unaffected: advisory locks lock nothing else.
MIGRATION_LOCK_KEY = int.from_bytes(b"inspmigr", "big")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (dashboard, stats) run while the server writes; busy_timeout makes concurrent writers
    # wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout, PostgreSQL a pre-ping pool."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade_schema(engine: Engine) -> None:
    """Bring the database to the newest Alembic revision (creating it on first use).

    Safe when several replicas start against one PostgreSQL at once: each waits for a transaction-scoped
    advisory lock, so one migrates and the others then find the schema at head and do nothing. SQLite needs no
    lock: its first writer holds the whole database until the migration commits.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        _lock_for_migration(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _lock_for_migration(connection: Connection) -> None:
    # Transaction-scoped: released by the commit that ends the migration, or by the rollback of a failed one,
    # and by PostgreSQL itself if the process dies; never left held.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded rows usable after commit (they are handed to the HTTP layer)."""
    return sessionmaker(engine, expire_on_commit=False)


def open_database(url: str) -> sessionmaker[Session]:
    """Engine, migrated schema and a session factory for `url`: what the CLI and the server start with."""
    engine = make_engine(url)
    upgrade_schema(engine)
    return session_factory(engine)
