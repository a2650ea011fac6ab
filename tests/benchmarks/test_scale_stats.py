"""The scale bench end to end on small fills, so `make bench`'s statistics-at-scale figures cannot rot unseen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from benchmarks import scale_stats


@pytest.mark.parametrize("database", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
def test_the_bench_times_every_request_at_both_sizes_and_leaves_nothing_behind(
    database: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(scale_stats.SIZES, "10k", 10_000)
    monkeypatch.setitem(scale_stats.SIZES, "20k", 20_000)
    figures = scale_stats.measure(database, ("10k", "20k"), datetime.now(UTC).replace(microsecond=0), tmp_path)
    small = {key.removesuffix("_10k") for key in figures if key.endswith("_ms_10k")}
    large = {key.removesuffix("_20k") for key in figures if key.endswith("_ms_20k")}
    assert small == large
    names = {key.removeprefix(f"{database}_").removesuffix("_ms") for key in small}
    assert len(names) == 11 and {"stats_product_hourly", "stats_line_hourly", "audit_queue"} <= names
    assert all(figures[f"{key}_10k"] > 0 for key in small)
    assert figures[f"{database}_bytes_per_row_20k"] > 0
    assert not list(tmp_path.glob("scale-*"))  # the SQLite files removed
    if database == "pg":
        with psycopg.connect(scale_stats.POSTGRES_ADMIN) as admin:
            left = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_scale_%k'").fetchall()
        assert left == []


def test_growth_figures_name_the_largest_ratio_and_the_slowest_request() -> None:
    figures = {
        "pg_a_ms_1m": 10.0,
        "pg_a_ms_10m": 12.0,
        "pg_b_ms_1m": 20.0,
        "pg_b_ms_10m": 30.0,
        "sqlite_a_ms_1m": 5.0,
        "sqlite_a_ms_10m": 4.0,
    }
    growth = scale_stats.growth_figures(figures)
    assert growth["pg_b_10m_vs_1m"] == pytest.approx(1.5)
    assert growth["stats_growth_10m_vs_1m"] == pytest.approx(1.5)
    assert growth["stats_slowest_ms_10m_pg"] == 30.0 and growth["stats_slowest_ms_10m_sqlite"] == 4.0
