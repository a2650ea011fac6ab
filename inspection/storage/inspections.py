"""Inspection rows: add (one per answered frame), fetch, filter and page, and record QA feedback."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, literal, or_, select
from sqlalchemy.orm import Session, sessionmaker

from inspection.errors import InspectionError
from inspection.storage.minute_counts import apply_minute_deltas, count_minutes
from inspection.storage.rollups import ROW_FIELDS, apply_deltas, count_rows, relabel_deltas, rollups_enabled
from inspection.storage.schema import Inspection
from inspection.validation import check_text, parse_time

MAX_PAGE_SIZE = 500
TOTAL_CAP = 1_000  # a list page counts its matches up to here ("1,000+"), and says when there are more
# A pass scored at or above this fraction of its threshold is "low confidence": close enough to the line that
# QA should see it, and worth keeping for retraining. Half the threshold keeps the review queue short on a
# well-separated product while still catching the near misses.
LOW_CONFIDENCE_FRACTION = 0.5


def needs_review(is_defect: bool, probability: float, threshold: float) -> bool:
    """Defect verdicts and low-confidence passes: the frames a QA engineer should look at."""
    return is_defect or probability >= LOW_CONFIDENCE_FRACTION * threshold


class InspectionNotFound(InspectionError):  # noqa: N818 (reads as the outcome at call sites)
    """No inspection with that id."""


@dataclass(frozen=True)
class InspectionFilter:
    """What `list_inspections` narrows by; every field optional."""

    product: str | None = None
    line_id: str | None = None
    camera_id: str | None = None
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    has_feedback: bool | None = None
    review: bool = False  # only frames that need_review()
    audit: bool = False  # QA's audit queue: frames drawn for the audit and not yet labelled, oldest first


def add_inspection(sessions: sessionmaker[Session], **fields: Any) -> Inspection:
    """Insert one answered inspection in its own transaction and return the stored row; the id is a fresh UUID
    and received_at now, unless given. The server's insert (`add_inspections`) with a group of one, so a row
    written this way (the tests', a script's) goes through the same path as a served frame's."""
    row = {**fields, "id": fields.get("id") or str(uuid.uuid4())}
    row["received_at"] = row.get("received_at") or datetime.now(UTC)
    add_inspections(sessions, [row])
    return get_inspection(sessions, row["id"])


def add_inspections(sessions: sessionmaker[Session], rows: list[dict[str, Any]]) -> None:
    """Insert many answered inspections in one transaction: all or none.

    The server's group commit (serving.row_writer): one bulk INSERT and one commit for every row waiting, instead
    of an ORM object and a commit per frame, which cost about 1 ms of CPU a row on 2 cores. Each row must carry
    every column add_inspection would fill: id and received_at included. A Core insert into the table: the ORM's
    bulk path turned each dict through the mapper first, 0.23 against 0.16 ms of CPU a row in groups of one (0.05
    against 0.04 in groups of 8; SQLite, 600 rows each way), and the table has no ORM-side defaults to apply.
    The insert runs on a connection of the session factory's engine, not in an ORM session, which only added its
    bookkeeping: 0.12 against 0.20 ms of CPU a row in groups of one, 0.08 against 0.11 in twos (SQLite, 600 rows).
    """
    if not rows:
        return
    missing = [row for row in rows if not row.get("id") or row.get("received_at") is None]
    if missing:
        raise InspectionError("every inspection row needs an id and a received_at time")
    with sessions.kw["bind"].begin() as connection:
        connection.execute(insert(cast(Table, Inspection.__table__)), rows)
        if rollups_enabled(sessions):
            # Same transaction: a row is never stored without being counted, nor counted without being stored.
            apply_deltas(connection, count_rows(rows))
            apply_minute_deltas(connection, count_minutes(rows))


def get_inspection(sessions: sessionmaker[Session], inspection_id: str) -> Inspection:
    """The row with this id, or InspectionNotFound."""
    with sessions() as session:
        row = session.get(Inspection, inspection_id)
    if row is None:
        raise InspectionNotFound(f"no inspection {inspection_id}")
    return row


@dataclass(frozen=True)
class InspectionPage:
    """One page of rows, newest first; `total` counts matches up to TOTAL_CAP (`total_capped` when there are more);
    `next_cursor` continues after the page's last row (None on the last page)."""

    rows: list[Inspection]
    total: int
    total_capped: bool
    next_cursor: str | None


def encode_cursor(row: Inspection) -> str:
    """An opaque position after `row` in its list's order: its received_at and id."""
    return base64.urlsafe_b64encode(f"{row.received_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    # Checked like any request field: a forged cursor's time or id must not reach the database unchecked.
    try:
        moment, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return parse_time(moment, "cursor"), check_text(row_id, "cursor", 36)
    except (ValueError, UnicodeDecodeError, InspectionError):
        raise InspectionError("cursor is not one this server returned as next_cursor") from None


def _place_and_time(where: InspectionFilter) -> list[Any]:
    """The filter's product, line, camera, verdict and time window as WHERE conditions."""
    conditions: list[Any] = []
    for column in ("product", "line_id", "camera_id", "verdict"):
        value = getattr(where, column)
        if value is not None:
            conditions.append(getattr(Inspection, column) == value)
    if where.since is not None:
        conditions.append(Inspection.received_at >= where.since)
    if where.until is not None:
        conditions.append(Inspection.received_at < where.until)
    return conditions


def _conditions(where: InspectionFilter) -> list[Any]:
    conditions = _place_and_time(where)
    if where.has_feedback is not None:
        conditions.append(
            Inspection.feedback_label.is_not(None) if where.has_feedback else Inspection.feedback_label.is_(None)
        )
    if where.review:
        conditions.append(
            or_(
                Inspection.verdict == "defect",
                Inspection.defect_probability >= LOW_CONFIDENCE_FRACTION * Inspection.threshold,
            )
        )
    if where.audit:
        conditions.extend([Inspection.audit_selected.is_(True), Inspection.feedback_label.is_(None)])
    return conditions


def list_inspection_page(
    sessions: sessionmaker[Session],
    where: InspectionFilter,
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
) -> InspectionPage:
    """One page of matching rows, newest first, after `cursor` (keyset: cost independent of depth) or `offset`.

    The total is counted only up to TOTAL_CAP matches: counting every match cost a scan of all of them on every
    page (778 ms for one product's review queue at 5M rows on PostgreSQL); 10,000 still cost 120 ms at 1M rows.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE or offset < 0:
        raise InspectionError(f"limit must be in [1, {MAX_PAGE_SIZE}] and offset >= 0")
    conditions = _conditions(where)
    query = select(Inspection).where(*conditions)
    # The audit queue is worked oldest first, so no selected frame waits forever behind newer ones (and the backlog
    # stays a random subset of the selection, which the estimates assume); every other list is newest first.
    order = (Inspection.received_at, Inspection.id) if where.audit else (Inspection.received_at.desc(), Inspection.id)
    if cursor is not None:
        after_at, after_id = _decode_cursor(cursor)
        beyond = Inspection.received_at > after_at if where.audit else Inspection.received_at < after_at
        query = query.where(or_(beyond, and_(Inspection.received_at == after_at, Inspection.id > after_id)))
    # Counted in the page's order: the newest matches, through the index the page itself reads. Unordered,
    # PostgreSQL gathered the matches partition by partition from the oldest day, each through a bitmap of the
    # whole day's rows for the product, so the cap cost what a day holds (6.7 ms at 10M rows, 2.2 at 1M; 2.7 both
    # ordered).
    capped = select(literal(1)).select_from(Inspection).where(*conditions).order_by(order[0]).limit(TOTAL_CAP + 1)
    with sessions() as session:
        total = int(session.scalar(select(func.count()).select_from(capped.subquery())) or 0)
        rows = list(session.scalars(query.order_by(*order).limit(limit).offset(offset)))
    next_cursor = encode_cursor(rows[-1]) if len(rows) == limit else None
    return InspectionPage(rows, min(total, TOTAL_CAP), total > TOTAL_CAP, next_cursor)


def list_inspections(
    sessions: sessionmaker[Session], where: InspectionFilter, limit: int = 50, offset: int = 0
) -> tuple[list[Inspection], int]:
    """One page of matching rows, newest first, and the number of matches (counted up to TOTAL_CAP)."""
    page = list_inspection_page(sessions, where, limit, offset)
    return page.rows, page.total


def count_inspections(sessions: sessionmaker[Session], where: InspectionFilter) -> int:
    """The exact number of rows `where` matches: for scripts, benchmarks and tests (a list page counts up to
    TOTAL_CAP only)."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Inspection).where(*_conditions(where))) or 0)


@dataclass(frozen=True)
class AuditProgress:
    """How far QA has got through the audit sample of a filter's frames."""

    n_selected: int
    n_audited: int

    @property
    def backlog(self) -> int:
        return self.n_selected - self.n_audited

    @property
    def share_done(self) -> float | None:
        return self.n_audited / self.n_selected if self.n_selected else None


def audit_progress(sessions: sessionmaker[Session], where: InspectionFilter) -> AuditProgress:
    """Frames drawn for the audit among those `where` matches (ignoring its audit and review flags), and how many of
    them QA has labelled."""
    conditions = [Inspection.audit_selected.is_(True), *_place_and_time(where)]
    labelled = func.count(Inspection.feedback_label)  # COUNT(column) skips NULLs: the labelled ones
    with sessions() as session:
        selected, audited = session.execute(select(func.count(), labelled).where(*conditions)).one()
    return AuditProgress(int(selected), int(audited))


def record_feedback(sessions: sessionmaker[Session], inspection_id: str, label: str, by: str | None) -> Inspection:
    """Store QA's ground truth for an inspection (a later correction replaces an earlier one)."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            # pysqlite runs a SELECT outside any transaction (it begins one only before a write), and SQLite ignores
            # FOR UPDATE: the label read below could be replaced by a concurrent labeller before this transaction
            # begins, and the rollups would move a count out of the wrong cell (the concurrent-feedback test failed
            # about one run in six). Taking the write lock first makes the read and the move one transaction.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        row = session.get(Inspection, inspection_id, with_for_update=True)
        if row is None:
            raise InspectionNotFound(f"no inspection {inspection_id}")
        moved = relabel_deltas({field: getattr(row, field) for field in ROW_FIELDS}, row.feedback_label, label)
        if rollups_enabled(sessions):
            apply_deltas(session, moved)  # same transaction as the label: the counts follow it or neither changes
        row.feedback_label = label
        row.feedback_at = datetime.now(UTC)
        row.feedback_by = by
    return row
