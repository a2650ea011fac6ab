"""Several replicas starting against one empty PostgreSQL at once: the schema is migrated once, and all start.

Separate processes (not threads), released together at one instant, as replicas are; the database is a fresh
one per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from inspection.storage.database import MIGRATIONS, make_engine
from inspection.storage.partitions import not_a_partition
from inspection.storage.schema import Base

pytestmark = pytest.mark.postgres

REPLICAS = 4
# Each process imports, builds its engine and connects first, then waits for the common start instant, so the
# upgrades really overlap instead of running one after another as the interpreters happen to come up.
UPGRADE_AT = """
import sys, time
from sqlalchemy import text
from inspection.storage.database import make_engine, upgrade_schema
engine = make_engine(sys.argv[1])
with engine.connect() as connection:
    connection.execute(text("SELECT 1"))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade_schema(engine)
print("upgraded")
"""


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def _assert_schema_at_head(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"include_name": not_a_partition})
            assert context.get_current_revision() == _head()
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_replicas_migrating_one_empty_database_at_once_all_start(postgres_url: str) -> None:
    start_at = time.time() + 6.0  # enough for four interpreters to import SQLAlchemy and Alembic on 2 cores
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_AT, postgres_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outcomes = [replica.communicate(timeout=60) for replica in replicas]
    assert time.time() > start_at, "the replicas finished before the common start: the test proved nothing"
    for replica, (out, err) in zip(replicas, outcomes, strict=True):
        assert replica.returncode == 0, err
        assert out.strip() == "upgraded"
    _assert_schema_at_head(postgres_url)


def test_db_upgrade_command_migrates_and_is_idempotent(postgres_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "INSPECTION_HOME": str(tmp_path), "INSPECTION_DATABASE_URL": postgres_url}
    for _ in range(2):  # the Kubernetes Job may run again on a migrated database: a no-op then
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert f"database schema at revision {_head()}" in result.stdout
    _assert_schema_at_head(postgres_url)
