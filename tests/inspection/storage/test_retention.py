"""Retention removes exactly the rows (and files) past each class's period, keeps pending audit picks, and never
changes the rollups; on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inspection.errors import ConfigError
from inspection.frame_archive import LocalArchive
from inspection.product_config import RetentionConfig, load_product_config
from inspection.storage.inspections import add_inspections, record_feedback
from inspection.storage.retention import apply_retention, rebuild_start
from inspection.storage.rollups import ROLLUPS, rebuild_rollups, recount_differences
from inspection.storage.schema import Inspection
from tests.inspection.storage.test_rollups import synthetic_rows

NOW = datetime(2026, 12, 31, 12, tzinfo=UTC)
POLICY = RetentionConfig(pass_days=10, defect_days=30, audited_days=60, unreviewed_audit_days=45)


def _kept(row: dict, label: str | None) -> bool:
    age = NOW - row["received_at"]
    audited = row["audit_selected"] or label is not None
    if row["product"] != "widget" or age < timedelta(days=10):
        return True
    if row["verdict"] == "defect" and age < timedelta(days=30):
        return True
    if audited and age < timedelta(days=60):
        return True
    return row["audit_selected"] and label is None and age < timedelta(days=45)


def test_retention_removes_what_the_dry_run_said_and_leaves_rollups_alone(sessions, tmp_path: Path) -> None:
    rng = random.Random(21)
    rows = synthetic_rows(rng, 600)
    archive = LocalArchive(tmp_path / "archive")
    for index, row in enumerate(rows):
        row["received_at"] = NOW - timedelta(days=rng.uniform(0, 90))
        row["archive_path"] = None
        if index % 3 == 0:
            row["archive_path"] = archive.write(archive.location(f"{row['product']}/{row['id']}.png"), b"frame")
    add_inspections(sessions, rows)
    labels: dict[str, str | None] = {row["id"]: None for row in rows}
    for row in rows[::7]:
        record_feedback(sessions, row["id"], "good", "qa")
        labels[row["id"]] = "good"
    with sessions() as session:
        rolled_before = session.execute(select(ROLLUPS)).all()

    dry = apply_retention(sessions, "widget", POLICY, archive.delete, dry_run=True, now=NOW)
    expected_gone = [row for row in rows if not _kept(row, labels[row["id"]])]
    assert dry.rows == len(expected_gone) > 50
    assert dry.frames == sum(1 for row in expected_gone if row.get("archive_path"))
    assert all(Path(row["archive_path"]).exists() for row in rows if row.get("archive_path"))

    done = apply_retention(sessions, "widget", POLICY, archive.delete, now=NOW, batch=37)
    assert (done.rows, done.frames) == (dry.rows, dry.frames)
    with sessions() as session:
        left = set(session.scalars(select(Inspection.id)))
        assert sorted(session.execute(select(ROLLUPS)).all()) == sorted(rolled_before)
    assert left == {row["id"] for row in rows if _kept(row, labels[row["id"]])}
    for row in rows:
        if row.get("archive_path"):
            assert Path(row["archive_path"]).exists() == (row["id"] in left)
    # Hours retention left whole still equal a recount, and a rebuild from there changes no total.
    start = rebuild_start(sessions)
    assert start is not None and start > NOW - timedelta(days=10)
    assert recount_differences(sessions, since=start) == []
    rebuild_rollups(sessions, since=start)
    with sessions() as session:
        assert session.scalar(select(func.sum(ROLLUPS.c.n))) == len(rows)


def test_retention_config_keeps_evidence_longer_than_passes(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text("retention: {pass_days: 30, defect_days: 7}\n")
    with pytest.raises(ConfigError, match="defect_days"):
        load_product_config(tmp_path, "widget")
    (tmp_path / "products" / "widget.yaml").write_text("retention: {pass_days: 30, defect_days: 365}\n")
    assert load_product_config(tmp_path, "widget").retention.defect_days == 365
