"""The throughput chart's minute counts: kept with the rows, recounted, pruned by age, backfilled by the migration,
on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select

from inspection.storage import throughput
from inspection.storage.database import make_engine, session_factory, upgrade_schema
from inspection.storage.inspections import add_inspections
from inspection.storage.minute_counts import (
    KEEP_DAYS,
    MINUTES,
    minute_differences,
    prune_minute_counts,
    rebuild_minute_counts,
)
from inspection.storage.rollups import without_rollups
from inspection.storage.schema import Inspection
from inspection.storage.throughput import compute_throughput
from tests.inspection.storage.migrating import upgrade_to
from tests.inspection.storage.test_rollups import START, synthetic_rows

END = START + timedelta(hours=48)  # synthetic_rows spreads its rows over the two days after START


def test_counts_follow_the_rows_and_a_rebuild_restores_them(sessions) -> None:
    rng = random.Random(4)
    for _ in range(12):
        add_inspections(sessions, synthetic_rows(rng, rng.randrange(1, 60)))
    assert minute_differences(sessions, since=START) == []
    # Rows stored another way (the benchmark's baseline without upkeep, a bulk load) are missing until a rebuild.
    add_inspections(without_rollups(sessions), synthetic_rows(rng, 40))
    assert minute_differences(sessions, since=START) != []
    rebuild_minute_counts(sessions)
    assert minute_differences(sessions, since=START) == []


def test_pruning_deletes_only_minutes_older_than_the_kept_days(sessions) -> None:
    add_inspections(sessions, synthetic_rows(random.Random(6), 400))
    now = START + timedelta(days=KEEP_DAYS, hours=24)  # the first day is older than KEEP_DAYS, the second is not
    cutoff = now - timedelta(days=KEEP_DAYS)
    with sessions.kw["bind"].begin() as connection:
        removed = prune_minute_counts(connection, now=now)
    assert removed > 0
    with sessions() as session:
        oldest = session.scalar(select(func.min(MINUTES.c.minute)))
    assert oldest >= cutoff.strftime("%Y-%m-%dT%H:%M")
    assert minute_differences(sessions, since=cutoff) == []  # what is kept still equals the rows


def test_throughput_counts_every_minute_and_percentiles_only_where_the_sample_holds_it(sessions, monkeypatch) -> None:
    rows = synthetic_rows(random.Random(8), 600)
    add_inspections(sessions, rows)
    now = max(row["received_at"] for row in rows)
    monkeypatch.setattr(throughput, "LATENCY_SAMPLE", 50)
    result = compute_throughput(sessions, minutes=24 * 60, now=now)
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=24 * 60 - 1)
    in_window = [row for row in rows if row["received_at"] >= first]
    assert result["n"] == len(in_window) and result["latency_sample"] == 50
    by_minute = {m["start"]: m for m in result["per_minute"]}
    for row in in_window:
        minute = by_minute[row["received_at"].replace(second=0, microsecond=0).isoformat()]
        assert minute["latency_mean_ms"] is not None
    with_percentiles = [m for m in result["per_minute"] if m["latency_p50_ms"] is not None]
    assert 0 < len(with_percentiles) < sum(m["n"] > 0 for m in result["per_minute"])
    # A minute with percentiles holds every frame of that minute: its p50 lies among its own frames' latencies.
    newest = with_percentiles[-1]
    own = sorted(row["latency_ms"] for row in in_window if row["received_at"].isoformat() >= newest["start"])
    assert own and min(own) <= newest["latency_p50_ms"] <= max(own)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_backfills_the_last_days_of_minutes(kind: str, tmp_path: Path, postgres_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else postgres_url
    engine = make_engine(url)
    upgrade_to(engine, "0007")
    rows = synthetic_rows(random.Random(10), 500)
    old = dict(rows[0], id="old-row", received_at=START - timedelta(days=5))  # older than the days backfilled
    with engine.begin() as connection:
        connection.execute(insert(Inspection.__table__), [*rows, old])
    upgrade_schema(engine)
    sessions = session_factory(engine)
    newest = max(row["received_at"] for row in rows)
    assert minute_differences(sessions, since=newest - timedelta(days=KEEP_DAYS - 1)) == []
    with engine.connect() as connection:
        assert connection.scalar(select(func.min(MINUTES.c.minute))) > old["received_at"].strftime("%Y-%m-%dT%H:%M")
    with engine.begin() as connection:
        connection.execute(delete(MINUTES))
    engine.dispose()
