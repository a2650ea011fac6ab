"""Storage against real databases: SQLite (WAL) and the local PostgreSQL; the same tests run on both.

PostgreSQL tests are marked `postgres` but never skipped: in CI an unreachable PostgreSQL is a failure.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from inspection.errors import InspectionError
from inspection.storage.api_keys import authenticate, create_api_key, hash_key, revoke_api_key
from inspection.storage.database import MIGRATIONS, make_engine, upgrade_schema
from inspection.storage.inspections import (
    InspectionFilter,
    InspectionNotFound,
    add_inspection,
    get_inspection,
    list_inspections,
    record_feedback,
)
from inspection.storage.partitions import not_a_partition
from inspection.storage.schema import ApiKey, Base


def _verdict(**overrides):
    fields = dict(
        product="widget",
        line_id="line-1",
        camera_id="cam-1",
        frame_id="f-1",
        verdict="pass",
        defect_probability=0.1,
        defect_type=None,
        threshold=0.5,
        model_version=1,
        latency_ms=7.5,
    )
    return {**fields, **overrides}


def test_migration_creates_both_tables_and_is_idempotent(sessions) -> None:
    engine = sessions.kw["bind"]
    upgrade_schema(engine)  # a second run is a no-op, as on every server start
    assert {"inspections", "api_keys", "alembic_version"} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert connection.scalar(text("select version_num from alembic_version")) == _head_revision()


def _head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_build_exactly_the_orm_schema(sessions) -> None:
    # A column or index added to schema.py without a migration would exist in tests' metadata but not in a
    # migrated plant database; compare the two so that drift fails here, not at a plant.
    with sessions.kw["bind"].connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": not_a_partition})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_add_and_get_round_trip(sessions) -> None:
    captured = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
    row = add_inspection(sessions, **_verdict(captured_at=captured, verdict="defect", defect_type="crack"))
    fetched = get_inspection(sessions, row.id)
    assert fetched.verdict == "defect" and fetched.defect_type == "crack"
    assert fetched.captured_at is not None and fetched.captured_at.replace(tzinfo=UTC) == captured
    with pytest.raises(InspectionNotFound):
        get_inspection(sessions, "no-such-id")


def test_filter_and_paginate_newest_first(sessions) -> None:
    start = datetime(2026, 11, 29, tzinfo=UTC)
    for i in range(25):
        add_inspection(
            sessions,
            **_verdict(line_id=f"line-{i % 2}", verdict="defect" if i % 5 == 0 else "pass"),
            received_at=start + timedelta(minutes=i),
        )
    rows, total = list_inspections(sessions, InspectionFilter(line_id="line-0"), limit=5)
    assert total == 13 and len(rows) == 5
    assert [r.received_at for r in rows] == sorted((r.received_at for r in rows), reverse=True)
    second, _ = list_inspections(sessions, InspectionFilter(line_id="line-0"), limit=5, offset=5)
    assert not {r.id for r in rows} & {r.id for r in second}
    defects, total_defects = list_inspections(sessions, InspectionFilter(verdict="defect"))
    assert total_defects == 5 and all(r.verdict == "defect" for r in defects)
    window, total_window = list_inspections(
        sessions, InspectionFilter(since=start + timedelta(minutes=10), until=start + timedelta(minutes=20))
    )
    assert total_window == 10
    assert all(start + timedelta(minutes=10) <= r.received_at.replace(tzinfo=UTC) for r in window)
    with pytest.raises(InspectionError):
        list_inspections(sessions, InspectionFilter(), limit=0)


def test_feedback_is_recorded_and_can_be_corrected(sessions) -> None:
    row = add_inspection(sessions, **_verdict())
    record_feedback(sessions, row.id, "scratch", by="qa-anna")
    record_feedback(sessions, row.id, "good", by="qa-ben")
    fetched = get_inspection(sessions, row.id)
    assert fetched.feedback_label == "good" and fetched.feedback_by == "qa-ben"
    labelled, total = list_inspections(sessions, InspectionFilter(has_feedback=True))
    assert total == 1 and labelled[0].id == row.id
    with pytest.raises(InspectionNotFound):
        record_feedback(sessions, "missing", "good", by=None)


def test_concurrent_writers_lose_nothing(sessions) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(50):
                add_inspection(sessions, **_verdict(camera_id=f"cam-{worker}", frame_id=str(i)))
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise silent
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    rows, total = list_inspections(sessions, InspectionFilter(), limit=500)
    assert total == 400 and len({r.id for r in rows}) == 400


def test_api_keys_are_stored_hashed_and_authenticate_by_role(sessions) -> None:
    key = create_api_key(sessions, "camera", "line-1 camera")
    assert key.startswith("insp_") and len(key) > 40
    with sessions() as session:
        stored = session.query(ApiKey).one()
    assert stored.key_hash == hash_key(key) and key not in stored.key_hash
    found = authenticate(sessions, key)
    assert found is not None and found.role == "camera"
    assert authenticate(sessions, key + "x") is None and authenticate(sessions, None) is None
    assert revoke_api_key(sessions, "line-1 camera") == 1
    assert authenticate(sessions, key) is None
    with pytest.raises(InspectionError, match="unknown role"):
        create_api_key(sessions, "admin", "x")


def test_review_filter_keeps_defects_and_low_confidence_passes(sessions) -> None:
    at = datetime(2026, 11, 30, 8, tzinfo=UTC)
    common = dict(product="widget", received_at=at, threshold=0.4, model_version=1, latency_ms=3.0)
    add_inspection(sessions, id="defect", verdict="defect", defect_probability=0.9, **common)
    add_inspection(sessions, id="near-miss", verdict="pass", defect_probability=0.25, **common)  # >= 0.2
    add_inspection(sessions, id="clear-pass", verdict="pass", defect_probability=0.05, **common)
    rows, total = list_inspections(sessions, InspectionFilter(review=True))
    assert total == 2 and {row.id for row in rows} == {"defect", "near-miss"}
