"""Database fixtures for the storage tests: the same tests run on SQLite (WAL) and on the local PostgreSQL.

PostgreSQL parameters are marked `postgres` but never skipped: in CI an unreachable PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from inspection.storage.database import make_engine, session_factory, upgrade_schema

POSTGRES_ADMIN = os.environ.get("INSPECTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_database() -> Iterator[str]:
    # A throwaway database per test: tests never see each other's rows, and nothing is left behind.
    name = f"inspection_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path):
    """A session factory on a fresh, migrated database of each kind."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'inspection.db'}"])
    else:
        urls = _postgres_database()
    url = next(urls)
    engine = make_engine(url)
    upgrade_schema(engine)
    yield session_factory(engine)
    engine.dispose()
    for _ in urls:  # runs the PostgreSQL generator's cleanup
        pass
