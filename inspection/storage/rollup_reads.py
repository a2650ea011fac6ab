"""Reading the rollups: a statistic's counts for a window, from day cells, hour cells (a line's, or a product's
summed over its lines) and at most two partial hours of rows (inspection.storage.rollups keeps the cells)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, func, literal_column, not_, null, select
from sqlalchemy.orm import Session, sessionmaker

from inspection.names import DEFECT_VERDICT, GOOD_LABEL
from inspection.storage.rollups import (
    DAILY,
    INSPECTIONS,
    NO_PROBABILITY,
    PRODUCT_HOURS,
    ROLLUP_NONE,
    ROLLUPS,
    day_floor,
)
from inspection.storage.time_keys import TimeUnit, dialect_time_key, format_time_key


def rollup_conditions(
    product: str | None, line_id: str | None, first_key: str | None, end_key: str | None, table: Table = ROLLUPS
) -> list[ColumnElement[bool]]:
    """WHERE terms on a rollup table: a product, a line, its whole UTC hours (or days) in [first_key, end_key)."""
    time_column = table.c.day if table is DAILY else table.c.hour
    conditions: list[ColumnElement[bool]] = []
    if product is not None:
        conditions.append(table.c.product == product)
    if line_id is not None:
        conditions.append(table.c.line_id == line_id)
    if first_key is not None:
        conditions.append(time_column >= first_key)
    if end_key is not None:
        conditions.append(time_column < end_key)
    return conditions


def _day_ceil(moment: datetime) -> datetime:
    floor = day_floor(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(moment: datetime) -> datetime:
    floor = _hour_floor(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def grouped_counts(
    sessions: sessionmaker[Session],
    *,
    product: str | None = None,
    line_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    hourly: bool = False,
    per_line: bool = True,
) -> list[Any]:
    """Inspections counted per (product, line_id, verdict, defect_type, audit_stratum, audit_probability[, hour]),
    NULLs where the rows hold NULLs and the defect type of defect verdicts only: `n_rows` of them, `n_selected`
    drawn into the audit, `n_audited` drawn and labelled by QA, `n_audited_defective` of those labelled a defect,
    `n_reviewed` labelled (drawn or not) and `n_reviewed_good` labelled good.

    Without `per_line`, product and line are not grouped by (both NULL): the cells a time-bucketed chart needs,
    a line's worth of them per hour instead of one per line and hour.

    Whole UTC hours come from the rollups; only the partial hours at the edges of a window that does not start
    or end on the hour are counted from the rows, so the cost is the cells shown plus at most two hours of rows.
    `since` and `until` must be aware UTC times; `until` is exclusive.
    """
    dialect = sessions.kw["bind"].dialect.name
    whole_start = _hour_ceil(since) if since is not None else None
    whole_end = _hour_floor(until) if until is not None else None
    edges: list[tuple[datetime, datetime]]
    if (
        since is not None
        and until is not None
        and whole_start is not None
        and whole_end is not None
        and whole_start >= whole_end
    ):
        edges = [(since, until)]  # the window lies inside one or two partial hours: rows only
        whole = False
    else:
        edges = []
        if since is not None and whole_start is not None and since < whole_start:
            edges.append((since, whole_start))
        if until is not None and whole_end is not None and whole_end < until:
            edges.append((whole_end, until))
        whole = True
    queries = []
    if whole:
        # Not by line: the lines' cells summed per product and hour, which hold as many cells at any line rate.
        hours = ROLLUPS if per_line or line_id is not None else PRODUCT_HOURS
        for table, start, end in _whole_spans(whole_start, whole_end, hourly, hours):
            queries.append(_rollup_query(product, line_id, start, end, hourly, per_line, table))
    for start, end in edges:
        queries.append(_row_query(dialect, product, line_id, start, end, hourly, per_line))
    groups: list[Any] = []
    with sessions() as session:
        for query in queries:
            groups.extend(session.execute(query).all())
    return groups


def _whole_spans(
    start: datetime | None, end: datetime | None, hourly: bool, hours: Table
) -> list[tuple[Table, datetime | None, datetime | None]]:
    """Whole hours [start, end) (None: unbounded) as the cells to read: the whole days among them from the day
    cells and the hours before and after those from `hours` (a line's or a product's hour cells); all hours when
    the hour itself is wanted."""
    if hourly:
        return [(hours, start, end)]
    first_day = _day_ceil(start) if start is not None else None
    last_day = day_floor(end) if end is not None else None
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [(hours, start, end)]  # no whole day inside
    spans: list[tuple[Table, datetime | None, datetime | None]] = [(DAILY, first_day, last_day)]
    if start is not None and first_day is not None and start < first_day:
        spans.append((hours, start, first_day))
    if end is not None and last_day is not None and last_day < end:
        spans.append((hours, last_day, end))
    return spans


def _cell_sums(n: Any, selected: Any, labelled: Any, good: Any) -> list[ColumnElement[Any]]:
    """The counts a group's tallies need, summed in SQL over its rows or cells (`n` rows each): all rows, those
    drawn into the audit, drawn and labelled, drawn and labelled defective, labelled, labelled good. Summing
    here instead of returning one group per QA label keeps a bucket to a row per design cell and defect type."""

    def where(condition: Any) -> Any:
        return func.sum(case((condition, n), else_=0))

    return [
        func.sum(n).label("n_rows"),
        where(selected).label("n_selected"),
        where(and_(selected, labelled)).label("n_audited"),
        where(and_(selected, labelled, not_(good))).label("n_audited_defective"),
        where(labelled).label("n_reviewed"),
        where(good).label("n_reviewed_good"),
    ]


def _defect_type(verdict: Any, defect_type: Any) -> Any:
    # Only a defect verdict's type is counted (per_type); a pass's type, if one were stored, is not shown.
    return case((verdict == DEFECT_VERDICT, defect_type), else_=null()).label("defect_type")


def _rollup_query(
    product: str | None,
    line_id: str | None,
    start: datetime | None,
    end: datetime | None,
    hourly: bool,
    per_line: bool = True,
    table: Table = ROLLUPS,
) -> Any:
    # Grouped by the stored columns and only then read through NULLIF and CASE: SQLite sorted its groups by those
    # expressions evaluated on every cell (14 ms against 9.6 for a product's hourly week at 10M rows).
    grouped: list[ColumnElement[Any]] = [
        table.c.verdict,
        table.c.defect_type,
        table.c.audit_stratum,
        table.c.audit_probability,
    ]
    shown: list[ColumnElement[Any]] = [
        table.c.verdict,
        _defect_type(table.c.verdict, func.nullif(table.c.defect_type, ROLLUP_NONE)),
        func.nullif(table.c.audit_stratum, ROLLUP_NONE).label("audit_stratum"),
        func.nullif(table.c.audit_probability, NO_PROBABILITY).label("audit_probability"),
    ]
    if hourly:
        grouped.append(table.c.hour)
        shown.append(table.c.hour)
    if per_line:
        grouped += [table.c.product, table.c.line_id]
        shown += [table.c.product, func.nullif(table.c.line_id, ROLLUP_NONE).label("line_id")]
    unit: TimeUnit = "day" if table is DAILY else "hour"
    first = format_time_key(start, unit) if start is not None else None
    last = format_time_key(end, unit) if end is not None else None
    label = table.c.feedback_label
    sums = _cell_sums(table.c.n, table.c.audit_selected.is_(True), label != ROLLUP_NONE, label == GOOD_LABEL)
    return (
        select(*shown, *_no_line(per_line), *sums)
        .where(*rollup_conditions(product, line_id, first, last, table))
        .group_by(*grouped)
        .having(func.sum(table.c.n) > 0)
    )


def _no_line(per_line: bool) -> list[ColumnElement[Any]]:
    """NULL product and line columns, for a query that does not group by them."""
    if per_line:
        return []
    return [null().label("product"), null().label("line_id")]


def _row_query(
    dialect: str,
    product: str | None,
    line_id: str | None,
    start: datetime,
    end: datetime,
    hourly: bool,
    per_line: bool = True,
) -> Any:
    rows = INSPECTIONS.c
    keys: list[ColumnElement[Any]] = [rows.product, rows.line_id] if per_line else []
    keys += [rows.verdict, _defect_type(rows.verdict, rows.defect_type), rows.audit_stratum, rows.audit_probability]
    if hourly:
        keys.append(dialect_time_key(dialect, "hour").label("hour"))
    conditions = [rows.received_at >= start, rows.received_at < end]
    if product is not None:
        conditions.append(rows.product == product)
    if line_id is not None:
        conditions.append(rows.line_id == line_id)
    label = rows.feedback_label
    sums = _cell_sums(literal_column("1"), rows.audit_selected.is_(True), label.is_not(None), label == GOOD_LABEL)
    return select(*keys, *_no_line(per_line), *sums).where(*conditions).group_by(*keys)
