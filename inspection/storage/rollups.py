"""Hourly rollups of inspection rows: counted in the transaction that writes the rows, moved by late QA feedback,
and rebuilt from the rows when rows arrive another way (a bulk load, a restore).

Every statistic is a sum over these counts, so its cost follows the number of (hour, group) cells it shows and
not the number of rows stored. The key is everything the live rates, the audit estimates, the p-chart, the Pareto
and the per-line charts group by. Not the camera: with it, 10M rows over 30 days made about one cell per seven
rows (docs/scale.md); a per-camera chart would get a table of its own.

The same cells summed per UTC day (a second table, kept in the same transactions) serve what a statistic reads in
whole days: a month is 30 cells per group instead of 720, and the cells an hour holds grow with the line's rate
(more label and type combinations fill) until every combination is there. Summed over a product's lines per hour
(a third table, the same transactions), they serve a product's and the plant's hourly and shift charts, whose
hours then hold about as many cells at any rate. Statistics read the cells through
inspection.storage.rollup_reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from inspection.storage.schema import Inspection, InspectionDailyRollup, InspectionProductRollup, InspectionRollup
from inspection.storage.time_keys import dialect_time_key, format_time_key, parse_time_key

ROLLUP_NONE = ""  # a NULL line, defect type, label or stratum, in a key column that cannot hold NULL
NO_PROBABILITY = -1.0  # a NULL audit probability (a row answered before audit sampling existed)
KEY_COLUMNS: tuple[str, ...] = (
    "product",
    "line_id",
    "hour",
    "verdict",
    "defect_type",
    "feedback_label",
    "audit_stratum",
    "audit_probability",
    "audit_selected",
)
# What rollup_key reads of a stored inspection row.
ROW_FIELDS = (
    "product",
    "line_id",
    "camera_id",
    "received_at",
    "verdict",
    "defect_type",
    "feedback_label",
    "audit_stratum",
    "audit_probability",
    "audit_selected",
    "latency_ms",
)
ROLLUPS = cast(Table, InspectionRollup.__table__)
DAILY = cast(Table, InspectionDailyRollup.__table__)
PRODUCT_HOURS = cast(Table, InspectionProductRollup.__table__)
LINE_AT = KEY_COLUMNS.index("line_id")
PRODUCT_KEY_COLUMNS = tuple(name for name in KEY_COLUMNS if name != "line_id")
HOUR_AT = KEY_COLUMNS.index("hour")
DAY_KEY_COLUMNS = tuple("day" if name == "hour" else name for name in KEY_COLUMNS)
INSPECTIONS = cast(Table, Inspection.__table__)

ROLLUPS_OFF = "rollups_off"
RollupKey = tuple[Any, ...]
Deltas = dict[RollupKey, tuple[int, float]]


def rollups_enabled(sessions: sessionmaker[Session]) -> bool:
    """Whether writes through the given session factory keep the rollups (only a benchmark's baseline turns it off)."""
    return not (sessions.kw.get("info") or {}).get(ROLLUPS_OFF, False)


def without_rollups(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The same database with rollup upkeep off: the baseline `server_rollups_vs_off` compares with."""
    return sessionmaker(sessions.kw["bind"], expire_on_commit=False, info={ROLLUPS_OFF: True})


def rollup_key(row: Mapping[str, Any], feedback_label: str | None = None, *, use_label: bool = False) -> RollupKey:
    """The rollup cell one inspection row counts in (with `use_label`, as if its QA label were `feedback_label`)."""
    label = feedback_label if use_label else row.get("feedback_label")
    probability = row.get("audit_probability")
    return (
        row["product"],
        row.get("line_id") or ROLLUP_NONE,
        format_time_key(row["received_at"], "hour"),
        row["verdict"],
        row.get("defect_type") or ROLLUP_NONE,
        label or ROLLUP_NONE,
        row.get("audit_stratum") or ROLLUP_NONE,
        NO_PROBABILITY if probability is None else float(probability),
        bool(row.get("audit_selected") or False),
    )


def count_rows(rows: Iterable[Mapping[str, Any]]) -> Deltas:
    """How much each rollup cell grows when these rows are stored."""
    deltas: Deltas = {}
    for row in rows:
        key = rollup_key(row)
        n, latency = deltas.get(key, (0, 0.0))
        deltas[key] = (n + 1, latency + float(row.get("latency_ms") or 0.0))
    return deltas


def apply_deltas(connection: Connection | Session, deltas: Deltas) -> None:
    """Add the deltas to their hour cells, and their sums to the day cells and the product's hour cells, in one
    upsert each, inside the caller's transaction.

    Cells are written in key order, so two transactions touching the same cells lock them in the same order
    and never deadlock each other on PostgreSQL.
    """
    if not deltas:
        return
    dialect = connection.get_bind().dialect.name if isinstance(connection, Session) else connection.dialect.name
    tables = (
        (ROLLUPS, KEY_COLUMNS, deltas),
        (DAILY, DAY_KEY_COLUMNS, day_deltas(deltas)),
        (PRODUCT_HOURS, PRODUCT_KEY_COLUMNS, product_deltas(deltas)),
    )
    for table, columns, cells in tables:
        values = [
            {**dict(zip(columns, key, strict=True)), "n": n, "latency_ms_sum": latency}
            for key, (n, latency) in sorted(cells.items())
        ]
        statement = _UPSERTS.get((dialect, table.name))
        if statement is None:
            statement = _UPSERTS[dialect, table.name] = _upsert(dialect, table, columns)
        connection.execute(statement, values)


def day_deltas(deltas: Deltas) -> Deltas:
    """The hour cells' deltas summed per day cell (the hour key "YYYY-MM-DDTHH" cut to its day)."""
    return _summed(deltas, lambda key: (*key[:HOUR_AT], key[HOUR_AT][:10], *key[HOUR_AT + 1 :]))


def product_deltas(deltas: Deltas) -> Deltas:
    """The hour cells' deltas summed per product hour cell (the line left out of the key)."""
    return _summed(deltas, lambda key: (*key[:LINE_AT], *key[LINE_AT + 1 :]))


def _summed(deltas: Deltas, coarser: Callable[[RollupKey], RollupKey]) -> Deltas:
    sums: Deltas = {}
    for key, (n, latency) in deltas.items():
        wider = coarser(key)
        old_n, old_latency = sums.get(wider, (0, 0.0))
        sums[wider] = (old_n + n, old_latency + latency)
    return sums


# One upsert construct per dialect and table, built once: building it and its cache key on every group commit
# cost about as much as the insert of the rows themselves in groups of 16.
_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(dialect: str, table: Table, columns: tuple[str, ...]) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(columns),
        set_={
            "n": table.c.n + statement.excluded.n,
            "latency_ms_sum": table.c.latency_ms_sum + statement.excluded.latency_ms_sum,
        },
    )


def relabel_deltas(row: Mapping[str, Any], old_label: str | None, new_label: str | None) -> Deltas:
    """Late QA feedback: one count leaves the old label's cell and joins the new one's."""
    old = rollup_key(row, old_label, use_label=True)
    new = rollup_key(row, new_label, use_label=True)
    if old == new:
        return {}
    latency = float(row.get("latency_ms") or 0.0)
    return {old: (-1, -latency), new: (1, latency)}


def _grouped_source(dialect: str, conditions: list[ColumnElement[bool]]) -> Any:
    """The rows counted per rollup cell, in SQL: what a rebuild inserts and what a check compares with."""
    columns = [
        INSPECTIONS.c.product,
        func.coalesce(INSPECTIONS.c.line_id, ROLLUP_NONE).label("line_id"),
        dialect_time_key(dialect, "hour").label("hour"),
        INSPECTIONS.c.verdict,
        func.coalesce(INSPECTIONS.c.defect_type, ROLLUP_NONE).label("defect_type"),
        func.coalesce(INSPECTIONS.c.feedback_label, ROLLUP_NONE).label("feedback_label"),
        func.coalesce(INSPECTIONS.c.audit_stratum, ROLLUP_NONE).label("audit_stratum"),
        func.coalesce(INSPECTIONS.c.audit_probability, NO_PROBABILITY).label("audit_probability"),
        INSPECTIONS.c.audit_selected,
    ]
    return (
        select(*columns, func.count().label("n"), func.coalesce(func.sum(INSPECTIONS.c.latency_ms), 0.0))
        .where(*conditions)
        .group_by(*columns)
    )


def row_hours(connection: Connection) -> tuple[datetime, datetime] | None:
    """The first and last UTC hour holding a stored row, or None when there are none."""
    first, last = connection.execute(
        select(func.min(INSPECTIONS.c.received_at), func.max(INSPECTIONS.c.received_at))
    ).one()
    if first is None:
        return None
    return (
        parse_time_key(format_time_key(first, "hour"), "hour"),
        parse_time_key(format_time_key(last, "hour"), "hour"),
    )


def rebuild_range(connection: Connection, start: datetime, end: datetime) -> int:
    """Recount the rollups of the UTC hours in [start, end) from the rows, in the caller's transaction, then the
    day cells of the days they touch and the product hour cells from the hour cells; returns the number of hour
    cells written. Rows outside the range are not read, so a rebuild goes in bounded steps."""
    dialect = connection.dialect.name
    first, last = format_time_key(start, "hour"), format_time_key(end, "hour")
    connection.execute(delete(ROLLUPS).where(ROLLUPS.c.hour >= first, ROLLUPS.c.hour < last))
    source = _grouped_source(dialect, [INSPECTIONS.c.received_at >= start, INSPECTIONS.c.received_at < end])
    result = connection.execute(insert(ROLLUPS).from_select([*KEY_COLUMNS, "n", "latency_ms_sum"], source))
    refresh_days(connection, start, end - timedelta(microseconds=1))
    refresh_product_hours(connection, first, last)
    return max(int(result.rowcount or 0), 0)


def _day_of_hour() -> ColumnElement[str]:
    return func.substr(ROLLUPS.c.hour, 1, 10)


def refresh_days(connection: Connection, first: datetime, last: datetime) -> None:
    """Rewrite the day cells of the UTC days from `first`'s to `last`'s (inclusive) as sums of their hour cells."""
    first_day, after_last = day_floor(first), day_floor(last) + timedelta(days=1)
    connection.execute(
        delete(DAILY).where(
            DAILY.c.day >= format_time_key(first_day, "day"), DAILY.c.day < format_time_key(after_last, "day")
        )
    )
    keys = [_day_of_hour() if name == "hour" else ROLLUPS.c[name] for name in KEY_COLUMNS]
    source = (
        select(*keys, func.sum(ROLLUPS.c.n), func.sum(ROLLUPS.c.latency_ms_sum))
        .where(
            ROLLUPS.c.hour >= format_time_key(first_day, "hour"), ROLLUPS.c.hour < format_time_key(after_last, "hour")
        )
        .group_by(*keys)
    )
    connection.execute(insert(DAILY).from_select([*DAY_KEY_COLUMNS, "n", "latency_ms_sum"], source))


def refresh_product_hours(connection: Connection, first: str, last: str) -> None:
    """Rewrite the product hour cells of the hour keys in [first, last) as sums of their lines' hour cells."""
    hours = PRODUCT_HOURS.c.hour
    connection.execute(delete(PRODUCT_HOURS).where(hours >= first, hours < last))
    keys = [ROLLUPS.c[name] for name in PRODUCT_KEY_COLUMNS]
    source = (
        select(*keys, func.sum(ROLLUPS.c.n), func.sum(ROLLUPS.c.latency_ms_sum))
        .where(ROLLUPS.c.hour >= first, ROLLUPS.c.hour < last)
        .group_by(*keys)
    )
    connection.execute(insert(PRODUCT_HOURS).from_select([*PRODUCT_KEY_COLUMNS, "n", "latency_ms_sum"], source))


def rebuild_rollups(
    sessions: sessionmaker[Session],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    step: timedelta = timedelta(days=1),
    on_step: Any = None,
) -> int:
    """Recount the rollups from the rows, one `step` of hours per transaction; returns cells written.

    Without bounds, every hour that holds a row. Hours whose rows retention has already pruned must not be
    rebuilt (their rollups are the only count left): pass `since` after the newest retention cutoff.
    """
    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        hours = row_hours(connection)
    if hours is None:
        return 0
    start = since if since is not None else hours[0]
    end = until if until is not None else hours[1] + timedelta(hours=1)
    start = parse_time_key(format_time_key(start, "hour"), "hour")
    written = 0
    while start < end:
        stop = min(start + step, end)
        with engine.begin() as connection:
            written += rebuild_range(connection, start, stop)
        if on_step is not None:
            on_step(start, stop)
        start = stop
    return written


def recount_differences(
    sessions: sessionmaker[Session], since: datetime | None = None
) -> list[tuple[RollupKey, int, int]]:
    """Cells where the rollups and a recount from the rows disagree: (key, rolled up, recounted); [] when equal.
    Day cells and product hour cells are compared with the sums of their hour cells (a day cell's key holds the
    day where the hour was; a product hour cell's has no line).

    `since` (an hour start) leaves out the hours before it: those retention pruned, whose rollups outlive the rows.
    """
    engine = sessions.kw["bind"]
    row_terms = [] if since is None else [INSPECTIONS.c.received_at >= since]
    cell_terms = [] if since is None else [ROLLUPS.c.hour >= format_time_key(since, "hour")]
    # The day cells against the hour cells they sum (both outlive the rows, so every day is compared).
    day_terms = [] if since is None else [DAILY.c.day >= format_time_key(since, "day")]
    hour_terms = [] if since is None else [ROLLUPS.c.hour >= format_time_key(day_floor(since), "hour")]
    hour_keys = [_day_of_hour() if name == "hour" else ROLLUPS.c[name] for name in KEY_COLUMNS]
    product_terms = [] if since is None else [PRODUCT_HOURS.c.hour >= format_time_key(since, "hour")]
    over_lines = [ROLLUPS.c[name] for name in PRODUCT_KEY_COLUMNS]
    with engine.connect() as connection:

        def counts(query: Any, keys: int = len(KEY_COLUMNS)) -> dict[RollupKey, int]:
            """Each row's count by its first `keys` columns (the count comes next)."""
            return {tuple(row[:keys]): int(row[keys]) for row in connection.execute(query)}

        recount = counts(_grouped_source(engine.dialect.name, row_terms))
        rolled = counts(select(*(ROLLUPS.c[name] for name in KEY_COLUMNS), ROLLUPS.c.n).where(*cell_terms))
        summed = counts(select(*hour_keys, func.sum(ROLLUPS.c.n)).where(*hour_terms).group_by(*hour_keys))
        days = counts(select(*(DAILY.c[name] for name in DAY_KEY_COLUMNS), DAILY.c.n).where(*day_terms))
        product_keys = len(PRODUCT_KEY_COLUMNS)
        lines_summed = counts(
            select(*over_lines, func.sum(ROLLUPS.c.n)).where(*cell_terms).group_by(*over_lines), product_keys
        )
        products = counts(
            select(*(PRODUCT_HOURS.c[name] for name in PRODUCT_KEY_COLUMNS), PRODUCT_HOURS.c.n).where(*product_terms),
            product_keys,
        )
    return sorted(_differing(rolled, recount) + _differing(days, summed) + _differing(products, lines_summed), key=repr)


def _differing(kept: dict[RollupKey, int], counted: dict[RollupKey, int]) -> list[tuple[RollupKey, int, int]]:
    keys = {key for key, n in counted.items() if n} | {key for key, n in kept.items() if n}
    return [(key, kept.get(key, 0), counted.get(key, 0)) for key in keys if kept.get(key, 0) != counted.get(key, 0)]


def day_floor(moment: datetime) -> datetime:
    """The start of the UTC day holding `moment`."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)
