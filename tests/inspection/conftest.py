"""Database fixtures for the storage tests: the same tests run on SQLite (WAL) and on the local PostgreSQL.

PostgreSQL parameters are marked `postgres` but never skipped: in CI an unreachable PostgreSQL is a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.storage.database import make_engine, session_factory, upgrade_schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path):
    """A session factory on a fresh, migrated database of each kind."""
    # PostgreSQL: a throwaway database per test (tests/conftest.py), so tests never see each other's rows.
    url = (
        f"sqlite:///{tmp_path / 'inspection.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()
