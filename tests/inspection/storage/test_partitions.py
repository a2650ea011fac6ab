"""PostgreSQL day partitions of `inspections`: the migration moves every row, the server keeps days ready, and
retention drops a whole day only when every row in it is past retention (a pending audit pick keeps its day)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from inspection.frame_archive import LocalArchive
from inspection.product_config import RetentionConfig
from inspection.storage.database import make_engine, session_factory, upgrade_schema
from inspection.storage.inspections import add_inspections, get_inspection, record_feedback
from inspection.storage.partitions import (
    DEFAULT_PARTITION,
    create_day_partition,
    day_partitions,
    drop_expired_partitions,
    ensure_partitions,
    partition_name,
)
from inspection.storage.retention import apply_retention
from inspection.storage.rollups import ROLLUPS, recount_differences, without_rollups
from inspection.storage.schema import Inspection
from tests.inspection.storage.migrating import upgrade_to
from tests.inspection.storage.test_rollups import synthetic_rows

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 12, 31, 12, tzinfo=UTC)
POLICY = RetentionConfig(pass_days=10, defect_days=15, audited_days=20, unreviewed_audit_days=45)


def test_migration_moves_every_row_into_day_partitions(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade_to(engine, "0005")
    rows = synthetic_rows(random.Random(5), 700)
    for index, row in enumerate(rows):
        row["received_at"] -= timedelta(days=index % 40)  # 40 days, some before and after midnight UTC
    # Rows of an older server; 0006 counts their rollups, then 0007 moves them.
    add_inspections(without_rollups(session_factory(engine)), rows)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT relkind FROM pg_class WHERE relname = 'inspections'")) == "p"
        key = connection.scalars(
            text(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'inspections'::regclass AND i.indisprimary"
            )
        ).all()
        assert sorted(key) == ["id", "received_at"]
        stored = {r.id: r.received_at for r in connection.execute(select(Inspection.id, Inspection.received_at))}
        days = day_partitions(connection)
        assert connection.scalar(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")) == 0
        names = connection.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'inspections'")).all()
    assert stored == {row["id"]: row["received_at"] for row in rows}
    assert {row["received_at"].date() for row in rows} <= set(days)
    assert {"ix_inspections_product_received", "ix_inspections_audit_queue", "ix_inspections_received"} <= set(names)
    # The move changed no count.
    assert recount_differences(sessions) == []
    relabelled = record_feedback(sessions, rows[0]["id"], "crack", "qa")
    assert get_inspection(sessions, relabelled.id).feedback_label == "crack"
    assert recount_differences(sessions) == []
    engine.dispose()


def test_coming_days_are_created_and_rows_in_the_default_move_into_them(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    far = datetime.now(UTC) + timedelta(days=30)  # beyond the week created ahead: lands in the default
    add_inspections(sessions, [{**synthetic_rows(random.Random(1), 1)[0], "received_at": far}])
    with engine.connect() as connection:
        assert connection.scalar(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")) == 1
    assert ensure_partitions(engine, today=far.date()) == 8 + 1  # the day before, the day, a week ahead
    assert ensure_partitions(engine, today=far.date()) == 0
    with engine.connect() as connection:
        assert connection.scalar(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")) == 0
        assert connection.scalar(text(f'SELECT count(*) FROM "{partition_name(far.date())}"')) == 1
    engine.dispose()


def test_retention_drops_whole_expired_days_and_keeps_a_day_with_a_pending_audit(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    archive = LocalArchive(tmp_path / "archive")
    expired_day, pending_day, recent_day = ((NOW - timedelta(days=d)).date() for d in (30, 29, 3))
    with engine.begin() as connection:
        for day in (expired_day, pending_day, recent_day):
            create_day_partition(connection, day)
    rng = random.Random(3)
    rows = []
    for day in (expired_day, pending_day, recent_day):
        for row in synthetic_rows(rng, 60):
            row["received_at"] = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                minutes=rng.randrange(24 * 60)
            )
            row["archive_path"] = archive.write(archive.location(f"{row['id']}.png"), b"frame")
            rows.append(row)
    for row in rows:
        if row["received_at"].date() != recent_day:
            row["audit_selected"] = False
    pending = next(row for row in rows if row["received_at"].date() == pending_day)
    pending["audit_selected"] = True  # drawn for the audit 29 days ago, unlabelled, deadline 45 days
    add_inspections(sessions, rows)
    with sessions() as session:
        rolled_before = sorted(session.execute(select(ROLLUPS)).all())
    policies = {"widget": POLICY, "gadget": POLICY}

    dry = drop_expired_partitions(sessions, policies, archive.delete, now=NOW, dry_run=True)
    # The days the migration made ahead of the real clock are empty and older than NOW's cutoffs: dropped too.
    assert [d.day for d in dry if d.rows] == [expired_day]
    assert pending_day not in {d.day for d in dry}
    done = drop_expired_partitions(sessions, policies, archive.delete, now=NOW)
    assert [(d.day, d.rows, d.frames) for d in done] == [(d.day, d.rows, d.frames) for d in dry]
    (whole,) = (d for d in done if d.rows)
    assert sum(whole.rows.values()) == whole.frames == 60
    for product in policies:
        apply_retention(sessions, product, POLICY, archive.delete, now=NOW, batch=7)
    with engine.connect() as connection:
        assert partition_name(expired_day) not in day_partitions(connection).values()
        left = set(connection.scalars(select(Inspection.id)))
        assert connection.scalar(select(func.count()).select_from(ROLLUPS)) == len(rolled_before)
    expected = {row["id"] for row in rows if row["received_at"].date() == recent_day} | {pending["id"]}
    assert left == expected
    for row in rows:
        assert Path(row["archive_path"]).exists() == (row["id"] in left)
    with sessions() as session:
        assert sorted(session.execute(select(ROLLUPS)).all()) == rolled_before  # statistics untouched
    engine.dispose()


def test_a_product_without_retention_keeps_every_day(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    day = (NOW - timedelta(days=300)).date()
    with engine.begin() as connection:
        create_day_partition(connection, day)
    row = {**synthetic_rows(random.Random(2), 1)[0], "product": "gadget", "audit_selected": False}
    row["received_at"] = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    add_inspections(sessions, [row])
    kept = {"widget": POLICY, "gadget": RetentionConfig()}
    for policies in (kept, {"widget": POLICY}):  # no retention, or no policy given at all: the day stays
        dropped = drop_expired_partitions(sessions, policies, LocalArchive(tmp_path).delete, now=NOW)
        assert day not in {d.day for d in dropped}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Inspection)) == 1
    engine.dispose()
