"""Retention: removing a product's old rows and their archived files, by class (pass, defect, audited), in bounded
batches, without touching the rollups, so every statistic of the removed hours stays as it was.

Which rows go is one SQL condition (`prunable`), used alike by the dry run's count and by the deletes, so a run
removes exactly what its dry run said (give or take rows that came of age in between).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, not_, or_, select, true
from sqlalchemy.orm import Session, sessionmaker

from inspection.product_config import RetentionConfig
from inspection.storage.schema import Inspection, RetentionRun, ShadowScore

DEFAULT_BATCH = 5_000  # rows per delete transaction: short enough that writers barely wait on SQLite


@dataclass(frozen=True)
class RetentionOutcome:
    """What a run removed (or, dry, would remove) for one product."""

    product: str
    rows: int
    frames: int
    complete_from: datetime | None  # rows at or after this time are all still stored
    dry_run: bool


def _older(days: int | None, now: datetime) -> ColumnElement[bool]:
    """Rows received more than `days` before now; nothing when `days` is None (kept forever)."""
    if days is None:
        return false()
    return Inspection.received_at < now - timedelta(days=days)


def prunable(product: str, policy: RetentionConfig, now: datetime) -> ColumnElement[bool]:
    """The rows of `product` past their retention: each class's period passed, and no audit still waiting.

    An audit-selected row without a QA label is the audit's pending evidence: it is kept until labelled or until
    `unreviewed_audit_days` after it was received, whatever the other periods say.
    """
    audited = or_(Inspection.audit_selected.is_(true()), Inspection.feedback_label.is_not(None))
    awaiting_audit = and_(
        Inspection.audit_selected.is_(true()),
        Inspection.feedback_label.is_(None),
        Inspection.received_at >= now - timedelta(days=policy.unreviewed_audit_days),
    )
    return and_(
        Inspection.product == product,
        _older(policy.pass_days, now),
        or_(Inspection.verdict != "defect", _older(policy.defect_days, now)),
        or_(not_(audited), _older(policy.audited_days, now)),
        not_(awaiting_audit),
    )


def complete_from(policy: RetentionConfig, now: datetime) -> datetime | None:
    """The oldest time from which every row is kept: the pass period's start (the shortest); None if none pruned."""
    return None if policy.pass_days is None else now - timedelta(days=policy.pass_days)


def apply_retention(
    sessions: sessionmaker[Session],
    product: str,
    policy: RetentionConfig,
    delete_file: Callable[[str], bool],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch: int = DEFAULT_BATCH,
    on_batch: Callable[[int], Any] | None = None,
) -> RetentionOutcome:
    """Remove (or with `dry_run` count) the product's rows past retention and their archived files.

    Rows go a batch per transaction, each batch's files right after it commits.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    condition = prunable(product, policy, now)
    whole_from = complete_from(policy, now)
    if whole_from is None:
        return RetentionOutcome(product, 0, 0, None, dry_run)
    if dry_run:
        with sessions() as session:
            rows, archived, maps = session.execute(
                select(
                    func.count(), func.count(Inspection.archive_path), func.count(Inspection.anomaly_map_path)
                ).where(condition)
            ).one()
        return RetentionOutcome(product, int(rows), int(archived) + int(maps), whole_from, True)
    rows_deleted = frames_deleted = 0
    while True:
        with sessions() as session:
            ids = list(
                session.scalars(select(Inspection.id).where(condition).order_by(Inspection.received_at).limit(batch))
            )
        if not ids:
            break
        with sessions.begin() as session:
            # The condition again: a row labelled since it was picked has become evidence and stays. The rollups
            # are left as they are: they are the statistics of these hours from now on.
            gone = session.execute(
                delete(Inspection)
                .where(Inspection.id.in_(ids), condition)
                .returning(Inspection.id, Inspection.archive_path, Inspection.anomaly_map_path)
            ).all()
            session.execute(delete(ShadowScore).where(ShadowScore.inspection_id.in_([row.id for row in gone])))
        # Files after their rows commit: a crash in between leaves unnamed files (found by their date folders),
        # never a row whose frame is gone.
        for _, *paths in gone:
            frames_deleted += sum(delete_file(path) for path in paths if path)
        rows_deleted += len(gone)
        if on_batch is not None:
            on_batch(len(gone))
    with sessions.begin() as session:
        session.add(
            RetentionRun(
                product=product,
                ran_at=now,
                complete_from=whole_from,
                rows_deleted=rows_deleted,
                frames_deleted=frames_deleted,
            )
        )
    return RetentionOutcome(product, rows_deleted, frames_deleted, whole_from, False)


def rebuild_start(sessions: sessionmaker[Session]) -> datetime | None:
    """Where a rollup rebuild may start: after every hour a retention run has pruned (None: nothing pruned)."""
    with sessions() as session:
        latest = session.scalar(select(func.max(RetentionRun.complete_from)))
    if latest is None:
        return None
    latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
    # The hour holding the cutoff was pruned in part: the rebuild starts at the next whole hour.
    return latest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
