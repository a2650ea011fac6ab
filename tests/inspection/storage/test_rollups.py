"""The hourly rollups equal a recount from the rows after concurrent writes, late feedback, a rebuild and the
migration's backfill, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select

from inspection.storage.database import make_engine, session_factory, upgrade_schema
from inspection.storage.inspections import add_inspections, record_feedback
from inspection.storage.rollups import ROLLUPS, rebuild_rollups, recount_differences
from inspection.storage.schema import Inspection
from tests.inspection.storage.migrating import upgrade_to

START = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)


def synthetic_rows(rng: random.Random, n: int) -> list[dict]:
    """Rows over two days, several products, lines and cameras, audit strata and some NULLs."""
    rows = []
    for _ in range(n):
        defect = rng.random() < 0.2
        selected = rng.random() < 0.3
        rows.append(
            dict(
                id=str(uuid.uuid4()),
                product=rng.choice(["widget", "gadget"]),
                line_id=rng.choice(["line-1", "line-2", None]),
                camera_id=rng.choice(["cam-1", "cam-2", None]),
                received_at=START + timedelta(minutes=rng.randrange(48 * 60), seconds=rng.random()),
                verdict="defect" if defect else "pass",
                defect_probability=rng.random(),
                defect_type=rng.choice(["crack", "spot", None]) if defect else None,
                threshold=0.5,
                model_version=1,
                latency_ms=rng.uniform(1, 20),
                audit_probability=rng.choice([None, 0.05, 1.0]),
                audit_selected=selected,
                audit_stratum=rng.choice([None, "pass", "defect", "pass:0-0.5"]),
            )
        )
    return rows


def test_concurrent_writes_and_late_feedback_keep_rollups_equal_to_a_recount(sessions) -> None:
    rng = random.Random(3)
    batches = [synthetic_rows(rng, rng.randrange(1, 40)) for _ in range(40)]
    add_inspections(sessions, batches[0])  # something to label from the start
    written: list[str] = [row["id"] for row in batches[0]]
    lock = threading.Lock()

    def writer(mine: list[list[dict]]) -> None:
        for batch in mine:
            add_inspections(sessions, batch)
            with lock:
                written.extend(row["id"] for row in batch)

    def labeller(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(60):
            with lock:
                ids = list(written)
            if ids:
                try:
                    record_feedback(sessions, local.choice(ids), local.choice(["good", "crack", "scratch"]), "qa")
                except Exception as error:  # SQLite refuses a stale snapshot's write: nothing is half-counted
                    assert "locked" in str(error) or "busy" in str(error).lower(), error

    threads = [threading.Thread(target=writer, args=(batches[1 + i :: 3],)) for i in range(3)]
    threads += [threading.Thread(target=labeller, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Inspection)) == sum(map(len, batches))
        labelled = session.scalar(select(func.count()).where(Inspection.feedback_label.is_not(None)))
    assert labelled and labelled > 20
    assert recount_differences(sessions) == []


def test_relabel_moves_one_count_and_rebuild_restores_lost_rollups(sessions) -> None:
    rows = synthetic_rows(random.Random(5), 300)
    add_inspections(sessions, rows)
    for row in rows[:50]:
        record_feedback(sessions, row["id"], "good", "qa")
        record_feedback(sessions, row["id"], "crack", "qa")  # a correction moves the count again
    assert recount_differences(sessions) == []
    with sessions.begin() as session:
        session.execute(delete(ROLLUPS).where(ROLLUPS.c.product == "widget"))
    assert recount_differences(sessions) != []
    rebuild_rollups(sessions, step=timedelta(hours=7))
    assert recount_differences(sessions) == []


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_backfills_rollups_from_rows_already_stored(kind: str, tmp_path: Path, postgres_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else postgres_url
    engine = make_engine(url)
    upgrade_to(engine, "0005")
    rows = synthetic_rows(random.Random(9), 500)
    with engine.begin() as connection:  # rows written by a server of the previous version: no rollups
        connection.execute(insert(Inspection.__table__), rows)
    upgrade_schema(engine)
    sessions = session_factory(engine)
    assert recount_differences(sessions) == []
    with engine.connect() as connection:
        assert connection.scalar(select(func.sum(ROLLUPS.c.n))) == 500
    engine.dispose()


def test_stats_over_a_window_with_partial_hours_equal_a_count_of_the_rows(sessions) -> None:
    from inspection.storage.defect_stats import compute_stats

    rows = synthetic_rows(random.Random(11), 400)
    add_inspections(sessions, rows)
    for since, until in [
        (START + timedelta(minutes=47), START + timedelta(hours=20, minutes=13)),  # partial hours at both edges
        (START + timedelta(minutes=31), START + timedelta(minutes=50)),  # inside one hour
        (START + timedelta(minutes=30), START + timedelta(hours=30, minutes=30)),  # whole hours only
    ]:
        stats = compute_stats(sessions, since=since, until=until, bucket="hour")
        expected = [row for row in rows if since <= row["received_at"] < until]
        assert stats["totals"]["n"] == len(expected)
        assert stats["totals"]["n_defect"] == sum(row["verdict"] == "defect" for row in expected)
        assert sum(b["n"] for b in stats["buckets"]) == len(expected)


def test_keyset_pages_walk_every_row_once_and_the_total_is_capped(sessions, monkeypatch) -> None:
    from inspection.storage import inspections
    from inspection.storage.inspections import InspectionFilter, list_inspection_page

    rows = synthetic_rows(random.Random(13), 230)
    for row in rows[:40]:
        row["received_at"] = START  # ties on received_at: the id breaks them
    add_inspections(sessions, rows)
    monkeypatch.setattr(inspections, "TOTAL_CAP", 100)
    seen: list[str] = []
    cursor = None
    while True:
        page = list_inspection_page(sessions, InspectionFilter(), limit=17, cursor=cursor)
        assert page.total == 100 and page.total_capped
        seen += [row.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 230
    offset_order = [row.id for row in list_inspection_page(sessions, InspectionFilter(), limit=500).rows]
    assert seen == offset_order


def test_statistics_over_whole_days_read_day_cells_and_agree_with_the_hours(sessions, monkeypatch) -> None:
    from inspection.storage import rollup_reads, rollups
    from inspection.storage.defect_stats import compute_stats

    rng = random.Random(12)
    rows = synthetic_rows(rng, 600)
    for index, row in enumerate(rows):
        row["received_at"] -= timedelta(days=index % 6)  # eight days of rows
    add_inspections(sessions, rows)
    for row in rows[:40]:
        record_feedback(sessions, row["id"], rng.choice(["good", "crack"]), "qa")
    assert recount_differences(sessions) == []  # hour cells against the rows, day cells against the hours
    read = _tables_read(monkeypatch)
    windows = [
        (None, None),
        (START - timedelta(days=4, hours=3, minutes=10), START + timedelta(days=1, hours=5, minutes=20)),
        (START - timedelta(days=3), START + timedelta(days=1)),
    ]
    with_days = [compute_stats(sessions, since=since, until=until) for since, until in windows]
    assert read.count(rollups.DAILY.name) == len(windows)
    monkeypatch.setattr(rollup_reads, "_whole_spans", lambda start, end, hourly, hours: [(hours, start, end)])
    for (since, until), stats in zip(windows, with_days, strict=True):
        assert stats == compute_stats(sessions, since=since, until=until)
        expected = [
            r
            for r in rows
            if (since is None or since <= r["received_at"]) and (until is None or r["received_at"] < until)
        ]
        assert stats["totals"]["n"] == len(expected)
    # A lost day cell is found by the check and restored by a rebuild of its hours.
    with sessions.begin() as session:
        session.execute(delete(rollups.DAILY).where(rollups.DAILY.c.product == "gadget"))
    assert recount_differences(sessions) != []
    rebuild_rollups(sessions)
    assert recount_differences(sessions) == []


def test_product_and_plant_hourly_charts_read_the_product_cells_and_agree_with_the_lines(sessions, monkeypatch) -> None:
    from inspection.storage import rollup_reads, rollups
    from inspection.storage.defect_stats import compute_stats

    rng = random.Random(13)
    rows = synthetic_rows(rng, 500)
    add_inspections(sessions, rows)
    for row in rows[:30]:
        record_feedback(sessions, row["id"], rng.choice(["good", "spot"]), "qa")
    assert recount_differences(sessions) == []  # the product cells against the sums of the lines' cells
    read = _tables_read(monkeypatch)
    charts = [
        {"product": "widget", "bucket": "hour"},
        {"bucket": "shift"},
        {"line_id": "line-1", "bucket": "hour"},  # a line's chart reads the lines' cells
    ]
    window = {"since": START + timedelta(minutes=30), "until": START + timedelta(days=1, hours=12, minutes=30)}
    with_products = [compute_stats(sessions, **window, **chart) for chart in charts]
    assert read.count(rollups.PRODUCT_HOURS.name) == 2
    monkeypatch.setattr(rollups, "PRODUCT_HOURS", rollups.ROLLUPS)
    monkeypatch.setattr(rollup_reads, "PRODUCT_HOURS", rollups.ROLLUPS)
    for chart, stats in zip(charts, with_products, strict=True):
        assert stats == compute_stats(sessions, **window, **chart)
    monkeypatch.undo()
    # A lost product cell is found by the check and restored by a rebuild of its hours.
    with sessions.begin() as session:
        session.execute(delete(rollups.PRODUCT_HOURS).where(rollups.PRODUCT_HOURS.c.product == "gadget"))
    assert recount_differences(sessions) != []
    rebuild_rollups(sessions)
    assert recount_differences(sessions) == []


def _tables_read(monkeypatch) -> list[str]:
    """The names of the rollup tables the statistics read from now on, one per query."""
    from inspection.storage import rollup_reads, rollups

    read: list[str] = []
    original = rollup_reads._rollup_query

    def recording(*args, **kwargs):
        read.append(kwargs.get("table", args[6] if len(args) > 6 else rollups.ROLLUPS).name)
        return original(*args, **kwargs)

    monkeypatch.setattr(rollup_reads, "_rollup_query", recording)
    return read
