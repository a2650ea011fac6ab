"""Frames per product, line and UTC minute, for the throughput chart: counted in the transaction that writes the
rows, kept for KEEP_DAYS only.

The throughput chart shows the last hour (at most a day) minute by minute. Counted from the rows, its cost grew
with the line's rate: ten times the frames an hour, ten times the rows grouped. From these counts it is one cell
per line and minute, whatever the rate. The hourly rollups cannot serve it (a minute is finer than their hour),
and adding the minute to their key would multiply their cells by sixty for every other statistic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from inspection.storage.schema import Inspection, InspectionMinuteCount
from inspection.storage.time_keys import dialect_time_key, format_time_key

# Longer than the longest throughput window (a day), so a window never reaches past the counts kept.
KEEP_DAYS = 2
NO_LINE = ""  # a NULL line in a key column that cannot hold NULL (as the hourly rollups store it)
MINUTES = cast(Table, InspectionMinuteCount.__table__)
INSPECTIONS = cast(Table, Inspection.__table__)
MinuteKey = tuple[str, str, str]
MinuteDeltas = dict[MinuteKey, tuple[int, float]]


def count_minutes(rows: Iterable[Mapping[str, Any]]) -> MinuteDeltas:
    """How much each (product, line, minute) cell grows when these rows are stored."""
    deltas: MinuteDeltas = {}
    for row in rows:
        key = (row["product"], row.get("line_id") or NO_LINE, format_time_key(row["received_at"], "minute"))
        n, latency = deltas.get(key, (0, 0.0))
        deltas[key] = (n + 1, latency + float(row.get("latency_ms") or 0.0))
    return deltas


def apply_minute_deltas(connection: Connection, deltas: MinuteDeltas) -> None:
    """Add the deltas in one upsert inside the caller's transaction, in key order (no deadlock between writers)."""
    if not deltas:
        return
    values = [
        {"product": product, "line_id": line, "minute": minute, "n": n, "latency_ms_sum": latency}
        for (product, line, minute), (n, latency) in sorted(deltas.items())
    ]
    statement = _UPSERTS.get(connection.dialect.name)
    if statement is None:
        statement = _UPSERTS[connection.dialect.name] = _upsert(connection.dialect.name)
    connection.execute(statement, values)


_UPSERTS: dict[str, Any] = {}  # built once per dialect: building it on every group commit costs as much as the rows


def _upsert(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(MINUTES)
    return statement.on_conflict_do_update(
        index_elements=["product", "line_id", "minute"],
        set_={
            "n": MINUTES.c.n + statement.excluded.n,
            "latency_ms_sum": MINUTES.c.latency_ms_sum + statement.excluded.latency_ms_sum,
        },
    )


def recount_minutes(connection: Connection, start: datetime, end: datetime) -> int:
    """Recount the cells of the minutes in [start, end) from the rows, in the caller's transaction."""
    first, last = format_time_key(start, "minute"), format_time_key(end, "minute")
    connection.execute(delete(MINUTES).where(MINUTES.c.minute >= first, MINUTES.c.minute < last))
    line = func.coalesce(INSPECTIONS.c.line_id, NO_LINE).label("line_id")
    minute = dialect_time_key(connection.dialect.name, "minute").label("minute")
    source = (
        select(INSPECTIONS.c.product, line, minute, func.count(), func.coalesce(func.sum(INSPECTIONS.c.latency_ms), 0))
        .where(INSPECTIONS.c.received_at >= start, INSPECTIONS.c.received_at < end)
        .group_by(INSPECTIONS.c.product, line, minute)
    )
    result = connection.execute(
        insert(MINUTES).from_select(["product", "line_id", "minute", "n", "latency_ms_sum"], source)
    )
    return max(int(result.rowcount or 0), 0)


def rebuild_minute_counts(sessions: sessionmaker[Session], now: datetime | None = None) -> int:
    """Recount the last KEEP_DAYS of minute cells before `now` (default: the newest row) from the rows, an hour per
    transaction; the path a bulk load or a restore takes, like `rebuild_rollups`. Returns cells written."""
    engine = sessions.kw["bind"]
    if now is None:
        with engine.connect() as connection:
            newest = connection.scalar(select(func.max(INSPECTIONS.c.received_at)))
        if newest is None:
            return 0
        now = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end.replace(minute=0) - timedelta(days=KEEP_DAYS)
    written = 0
    while start < end:
        stop = min(start + timedelta(hours=1), end)
        with engine.begin() as connection:
            written += recount_minutes(connection, start, stop)
        start = stop
    return written


def prune_minute_counts(connection: Connection, now: datetime | None = None) -> int:
    """Delete the cells older than KEEP_DAYS before `now`: the table holds about two days, whatever the history."""
    cutoff = format_time_key((now or datetime.now(UTC)) - timedelta(days=KEEP_DAYS), "minute")
    result = connection.execute(delete(MINUTES).where(MINUTES.c.minute < cutoff))
    return max(int(result.rowcount or 0), 0)


def minute_totals(
    sessions: sessionmaker[Session], *, since: datetime, product: str | None = None, line_id: str | None = None
) -> dict[str, tuple[int, float]]:
    """Frames and their summed latency per UTC minute key from `since`'s minute on, over the chosen product/line."""
    conditions = [MINUTES.c.minute >= format_time_key(since, "minute")]
    if product is not None:
        conditions.append(MINUTES.c.product == product)
    if line_id is not None:
        conditions.append(MINUTES.c.line_id == line_id)
    query = (
        select(MINUTES.c.minute, func.sum(MINUTES.c.n), func.sum(MINUTES.c.latency_ms_sum))
        .where(*conditions)
        .group_by(MINUTES.c.minute)
    )
    with sessions() as session:
        return {minute: (int(n), float(latency)) for minute, n, latency in session.execute(query)}


def minute_differences(sessions: sessionmaker[Session], since: datetime) -> list[tuple[MinuteKey, int, int]]:
    """Cells from `since`'s minute on where the counts and a recount from the rows disagree: (key, kept, recounted)."""
    engine = sessions.kw["bind"]
    line = func.coalesce(INSPECTIONS.c.line_id, NO_LINE)
    minute = dialect_time_key(engine.dialect.name, "minute")
    start = since.replace(second=0, microsecond=0)
    with engine.connect() as connection:
        recount = {
            (product, line_id, key): int(n)
            for product, line_id, key, n in connection.execute(
                select(INSPECTIONS.c.product, line, minute, func.count())
                .where(INSPECTIONS.c.received_at >= start)
                .group_by(INSPECTIONS.c.product, line, minute)
            )
        }
        kept = {
            (product, line_id, key): int(n)
            for product, line_id, key, n in connection.execute(
                select(MINUTES.c.product, MINUTES.c.line_id, MINUTES.c.minute, MINUTES.c.n).where(
                    MINUTES.c.minute >= format_time_key(start, "minute")
                )
            )
        }
    return sorted(
        (key, kept.get(key, 0), recount.get(key, 0))
        for key in set(recount) | set(kept)
        if kept.get(key, 0) != recount.get(key, 0)
    )
