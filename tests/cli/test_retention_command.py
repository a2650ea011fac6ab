"""`inspection db retention` on partitioned PostgreSQL: a dry run names the whole days it would drop, the run drops
them, and the rest goes by the batch deletes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from inspection.storage.database import make_engine, session_factory, upgrade_schema
from inspection.storage.inspections import add_inspections
from inspection.storage.partitions import create_day_partition, day_partitions
from inspection.storage.schema import Inspection
from tests.cli.cli_runner import run_cli
from tests.conftest import make_configs_dir
from tests.inspection.storage.test_rollups import synthetic_rows

pytestmark = pytest.mark.postgres


def test_retention_command_drops_whole_expired_days(settings, tmp_path, postgres_url, monkeypatch) -> None:
    monkeypatch.setenv("INSPECTION_DATABASE_URL", postgres_url)
    policy = "retention: {pass_days: 10, defect_days: 20, audited_days: 20, unreviewed_audit_days: 30}\n"
    configs = make_configs_dir(tmp_path / "retention-configs", {"widget": policy, "gadget": policy})
    settings = settings.model_copy(update={"configs_dir": configs})
    engine = make_engine(postgres_url)
    upgrade_schema(engine)
    old_day, recent = (datetime.now(UTC) - timedelta(days=40)).date(), datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as connection:
        create_day_partition(connection, old_day)
    rows = synthetic_rows(random.Random(4), 40)
    for index, row in enumerate(rows):
        row["received_at"] = (
            datetime(old_day.year, old_day.month, old_day.day, 12, tzinfo=UTC) if index < 30 else recent
        )
        row["audit_selected"] = False
    add_inspections(session_factory(engine), rows)

    dry = run_cli(settings, "db", "retention", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would drop the partition of {old_day}" in dry.stdout
    done = run_cli(settings, "db", "retention")
    assert done.returncode == 0, done.stderr
    assert f"dropped the partition of {old_day}" in done.stdout
    with engine.connect() as connection:
        assert old_day not in day_partitions(connection)
        assert connection.scalar(select(func.count()).select_from(Inspection)) == 10
    engine.dispose()
