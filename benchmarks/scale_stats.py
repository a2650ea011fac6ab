"""Statistics at scale: the dashboard's requests on 1M and 10M synthetic rows over 30 days, on PostgreSQL and
SQLite, and what keeping the rollups costs the insert path.

The rows go in through the project's own schema (migrated by Alembic) in bulk, PostgreSQL by COPY and SQLite by
executemany in big transactions, and the rollups are then recounted by `rebuild_rollups`, the path a bulk load or
a restore takes. Each request is the storage call its route makes (the HTTP layer adds the same constant on every
size), timed as the median of three after one warm-up.
"""

from __future__ import annotations

import io
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.context import BenchContext
from inspection.storage.database import make_engine, session_factory, upgrade_schema
from inspection.storage.defect_stats import compute_stats
from inspection.storage.inspections import InspectionFilter, add_inspections, list_inspection_page
from inspection.storage.rollups import rebuild_rollups, without_rollups
from inspection.storage.schema import Inspection
from inspection.storage.throughput import compute_throughput

POSTGRES_ADMIN = os.environ.get("INSPECTION_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}  # 100k: a quick look
DAYS = 30
PRODUCTS = ("P0", "P1", "P2")
LINES = 20
CAMERAS_PER_LINE = 4
DEFECT_TYPES = ("crack", "scratch", "spot", "dent")
CHUNK = 200_000
COLUMNS = (
    "id",
    "product",
    "line_id",
    "camera_id",
    "received_at",
    "verdict",
    "defect_probability",
    "defect_type",
    "threshold",
    "model_version",
    "latency_ms",
    "feedback_label",
    "audit_probability",
    "audit_selected",
    "audit_stratum",
)
console = Console(stderr=True)


def synthetic_chunks(n: int, end: datetime, seed: int = 0) -> Iterator[list[tuple[Any, ...]]]:
    """`n` rows spread evenly over the DAYS before `end`: 20 lines over 3 products, 4 cameras a line, 3% defects,
    audit picks at 2% of passes and every defect, two thirds of the picks labelled by QA."""
    rng = np.random.default_rng(seed)
    span = DAYS * 86_400.0
    start = end - timedelta(days=DAYS)
    for first in range(0, n, CHUNK):
        size = min(CHUNK, n - first)
        seconds = np.sort(rng.uniform(0, span, size))
        lines = rng.integers(0, LINES, size)
        cameras = rng.integers(0, CAMERAS_PER_LINE, size)
        defect = rng.random(size) < 0.03
        kinds = rng.integers(0, len(DEFECT_TYPES), size)
        scores = np.where(defect, rng.uniform(0.5, 1, size), rng.beta(1, 12, size))
        latency = rng.gamma(4, 2.5, size)
        picked = np.where(defect, True, rng.random(size) < 0.02)
        labelled = picked & (rng.random(size) < 0.67)
        truth_good = rng.random(size) < np.where(defect, 0.1, 0.99)
        rows = []
        for i in range(size):
            line = int(lines[i])
            is_defect = bool(defect[i])
            label = None
            if labelled[i]:
                label = "good" if truth_good[i] else DEFECT_TYPES[int(kinds[i])]
            rows.append(
                (
                    str(uuid.uuid4()),
                    PRODUCTS[line % len(PRODUCTS)],
                    f"line-{line:02d}",
                    f"cam-{line:02d}-{int(cameras[i])}",
                    start + timedelta(seconds=float(seconds[i])),
                    "defect" if is_defect else "pass",
                    float(scores[i]),
                    DEFECT_TYPES[int(kinds[i])] if is_defect else None,
                    0.5,
                    1,
                    float(latency[i]),
                    label,
                    1.0 if is_defect else 0.02,
                    bool(picked[i]),
                    "defect" if is_defect else "pass",
                )
            )
        yield rows


def _copy_text(rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    for row in rows:
        out.write("\t".join(_copy_value(value) for value in row))
        out.write("\n")
    return out.getvalue()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def fill_postgres(url: str, n: int, end: datetime) -> None:
    """COPY `n` synthetic rows into the migrated database at `url`, then recount the rollups."""
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw) as connection, connection.cursor() as cursor:
        for rows in synthetic_chunks(n, end):
            with cursor.copy(f"COPY inspections ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                copy.write(_copy_text(rows))
            connection.commit()
        cursor.execute("ANALYZE inspections")
        connection.commit()


def fill_sqlite(path: Path, n: int, end: datetime) -> None:
    """Insert `n` synthetic rows into the migrated SQLite file, in one transaction per chunk."""
    connection = sqlite3.connect(path)
    placeholders = ", ".join("?" for _ in COLUMNS)
    statement = f"INSERT INTO inspections ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    try:
        for rows in synthetic_chunks(n, end):
            with connection:
                connection.executemany(
                    statement,
                    [
                        (*row[:4], row[4].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"), *row[5:])
                        for row in rows
                    ],
                )
        connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _median_ms(call: Callable[[], Any]) -> float:
    call()  # warm-up: the first call pays for cold caches and statement preparation
    times = []
    for _ in range(3):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def dashboard_requests(sessions: sessionmaker[Session], now: datetime) -> dict[str, Callable[[], Any]]:
    """The requests the dashboard and the review page make, by name, as their routes make them."""
    week = now - timedelta(hours=168)
    product, line = PRODUCTS[0], "line-00"

    def list_page(where: InspectionFilter, page: int = 1) -> Callable[[], Any]:
        cursor = None
        for _ in range(page - 1):  # walked once, untimed: the request timed is the one for that page
            cursor = list_inspection_page(sessions, where, limit=50, cursor=cursor).next_cursor
        return lambda: list_inspection_page(sessions, where, limit=50, cursor=cursor)

    def audit_queue() -> None:
        # QA's audit queue: a product's audit picks not yet labelled, newest first (ix_inspections_audit_queue).
        with sessions() as session:
            session.scalars(
                select(Inspection)
                .where(
                    Inspection.product == product,
                    Inspection.audit_selected.is_(True),
                    Inspection.feedback_label.is_(None),
                )
                .order_by(Inspection.received_at.desc())
                .limit(50)
            ).all()

    return {
        "stats_overall_week": lambda: compute_stats(sessions, since=week, until=now),
        "stats_overall_all": lambda: compute_stats(sessions),
        "stats_product_week": lambda: compute_stats(sessions, product=product, since=week, until=now),
        "stats_product_hourly": lambda: compute_stats(sessions, product=product, since=week, bucket="hour"),
        "stats_product_shift": lambda: compute_stats(sessions, product=product, since=week, bucket="shift"),
        "stats_line_hourly": lambda: compute_stats(sessions, line_id=line, since=week, bucket="hour"),
        "throughput_product": lambda: compute_throughput(sessions, product=product, minutes=60, now=now),
        "list_review_page1": list_page(InspectionFilter(product=product, review=True)),
        "list_review_page20": list_page(InspectionFilter(product=product, review=True), page=20),
        "list_all_page1": list_page(InspectionFilter()),
        "audit_queue": audit_queue,
    }


def _time_requests(sessions: sessionmaker[Session], now: datetime) -> dict[str, float]:
    return {name: _median_ms(call) for name, call in dashboard_requests(sessions, now).items()}


def _postgres_database(name: str) -> str:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"


def _drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure_postgres(size: str, now: datetime) -> dict[str, float]:
    """Fill a fresh PostgreSQL database with SIZES[size] rows, time every request, measure bytes per row."""
    name = f"bench_scale_{size}"
    url = _postgres_database(name)
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        began = time.perf_counter()
        fill_postgres(url, SIZES[size], now)
        sessions = session_factory(engine)
        filled = time.perf_counter()
        rebuild_rollups(sessions)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE inspection_rollups"))
            rows_bytes = connection.scalar(text("SELECT pg_total_relation_size('inspections')"))
            rollup_bytes = connection.scalar(text("SELECT pg_total_relation_size('inspection_rollups')"))
        console.print(
            f"pg {size}: filled in {filled - began:.0f} s, rollups rebuilt in {time.perf_counter() - filled:.0f} s"
        )
        figures = {f"pg_{request}_ms_{size}": ms for request, ms in _time_requests(sessions, now).items()}
        figures[f"pg_bytes_per_row_{size}"] = rows_bytes / SIZES[size]
        figures[f"pg_rollup_bytes_per_row_{size}"] = rollup_bytes / SIZES[size]
        return figures
    finally:
        engine.dispose()
        _drop_postgres_database(name)


def measure_sqlite(size: str, now: datetime, workdir: Path) -> dict[str, float]:
    """The same on a fresh SQLite file."""
    path = workdir / f"scale-{size}.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade_schema(engine)
        began = time.perf_counter()
        fill_sqlite(path, SIZES[size], now)
        filled = time.perf_counter()
        sessions = session_factory(engine)
        rebuild_rollups(sessions)
        console.print(
            f"sqlite {size}: filled in {filled - began:.0f} s, rollups rebuilt in {time.perf_counter() - filled:.0f} s"
        )
        figures = {f"sqlite_{request}_ms_{size}": ms for request, ms in _time_requests(sessions, now).items()}
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        figures[f"sqlite_bytes_per_row_{size}"] = path.stat().st_size / SIZES[size]
        return figures
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def insert_rollups_vs_off(workdir: Path, rounds: int = 5, rows_per_round: int = 4_000, group: int = 16) -> float:
    """Rows/s of the server's insert (add_inspections, groups of `group` as the row writer commits them under
    load) with rollups kept, over rows/s without; alternating rounds on one SQLite file, the median of each."""
    engine = make_engine(f"sqlite:///{workdir / 'insert.db'}")
    upgrade_schema(engine)
    sessions = session_factory(engine)
    plain = without_rollups(sessions)
    now = datetime.now(UTC)
    rng = random.Random(1)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for round_index in range(rounds):
            for mode, factory in (
                (("on", sessions), ("off", plain)) if round_index % 2 else (("off", plain), ("on", sessions))
            ):
                rows = [
                    {
                        **dict(zip(COLUMNS, row, strict=True)),
                        "received_at": now + timedelta(milliseconds=i),
                        "line_id": f"line-{rng.randrange(LINES):02d}",
                    }
                    for i, row in enumerate(next(synthetic_chunks(rows_per_round, now, seed=round_index)))
                ]
                began = time.perf_counter()
                for first in range(0, len(rows), group):
                    add_inspections(factory, rows[first : first + group])
                rates[mode].append(len(rows) / (time.perf_counter() - began))
    finally:
        engine.dispose()
    console.print({mode: [round(rate) for rate in values] for mode, values in rates.items()})
    return statistics.median(rates["on"]) / statistics.median(rates["off"])


def growth_figures(figures: dict[str, float]) -> dict[str, float]:
    """Each request's 10M / 1M ratio, the largest of them, and the slowest request at 10M, per database."""
    out: dict[str, float] = {}
    ratios = []
    for key, value in figures.items():
        if key.endswith("_ms_10m") and key.replace("_ms_10m", "_ms_1m") in figures:
            ratio = value / max(figures[key.replace("_ms_10m", "_ms_1m")], 1e-6)
            out[key.replace("_ms_10m", "_10m_vs_1m")] = ratio
            ratios.append(ratio)
    if ratios:
        out["stats_growth_10m_vs_1m"] = max(ratios)
    for database in ("pg", "sqlite"):
        at_10m = [v for k, v in figures.items() if k.startswith(f"{database}_") and k.endswith("_ms_10m")]
        if at_10m:
            out[f"stats_slowest_ms_10m_{database}"] = max(at_10m)
    return out


def run(context: BenchContext, sizes: tuple[str, ...] = ("1m", "10m")) -> dict[str, float]:
    """Every figure of this benchmark (see the module docstring)."""
    now = datetime.now(UTC).replace(microsecond=0)
    figures: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="scale-", dir=context.workdir))
    figures["server_rollups_vs_off"] = insert_rollups_vs_off(workdir)
    for size in sizes:
        figures.update(measure_postgres(size, now))
        figures.update(measure_sqlite(size, now, workdir))
        console.print({k: round(v, 2) for k, v in figures.items() if size in k})
    figures.update(growth_figures(figures))
    return figures


if __name__ == "__main__":
    import json
    import sys

    chosen = tuple(sys.argv[1:]) or ("1m", "10m")
    with tempfile.TemporaryDirectory() as scratch:
        result = run(BenchContext(configs_dir=Path("configs"), workdir=Path(scratch)), chosen)
    print(json.dumps(result, indent=2))
