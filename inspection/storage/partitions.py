"""Day partitions of `inspections` on PostgreSQL (declarative range partitioning on `received_at`, migration 0007).

Each UTC day is a partition `inspections_pYYYYMMDD`; `inspections_default` catches rows of a day with no
partition yet (a camera's clock far off, an import of old frames), so an insert never fails for want of one.
`ensure_partitions` creates the coming days' partitions (the server at start and every hour, `inspection db
retention`, the migration), moving any rows the default partition holds for that day into the new one. Retention
drops a whole day's partition when every row in it is past its product's retention (`drop_expired_partitions`).
SQLite has no partitions: every function here is a no-op there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, false, func, not_, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from inspection.product_config import RetentionConfig
from inspection.storage.schema import Inspection, ShadowScore

PARENT = "inspections"
DEFAULT_PARTITION = "inspections_default"
PREFIX = "inspections_p"
DAYS_AHEAD = 7  # partitions kept ready beyond today: a week of server downtime before rows reach the default
PARTITION_LOCK_KEY = 0x1A5_0007  # pg_advisory_xact_lock: one process creates or drops partitions at a time


def not_a_partition(name: str | None, type_: Any, parent_names: Any) -> bool:
    """Alembic's `include_name`: the day and default partitions are not tables of the schema (autogenerate and the
    schema-drift test compare the parent only)."""
    table = name if type_ == "table" else parent_names.get("table_name")
    return not (table or "").startswith((PREFIX, DEFAULT_PARTITION))


def partition_name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def is_partitioned(connection: Connection) -> bool:
    """Whether `inspections` is a partitioned table here (PostgreSQL after migration 0007)."""
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.scalar(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": PARENT})
    return kind == "p"


def day_partitions(connection: Connection) -> dict[date, str]:
    """The day partitions that exist: day -> table name."""
    names = connection.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    )
    found = {}
    for name in names:
        if name.startswith(PREFIX):
            found[datetime.strptime(name.removeprefix(PREFIX), "%Y%m%d").date()] = name
    return found


def create_day_partition(connection: Connection, day: date) -> bool:
    """Create `day`'s partition in the caller's transaction unless it exists; rows the default partition holds for
    that day move into it first (attaching a range the default still holds is refused). True if created."""
    name = partition_name(day)
    if connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is not None:
        return False
    start, end = _day_bounds(day)
    bounds = {"start": start, "end": end}
    connection.execute(text(f'CREATE TABLE "{name}" (LIKE {PARENT} INCLUDING DEFAULTS)'))
    connection.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE received_at >= :start AND received_at < :end "
            f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved'
        ),
        bounds,
    )
    # Literal bounds: ATTACH takes no parameters. Both are dates this function formatted itself.
    connection.execute(
        text(
            f'ALTER TABLE {PARENT} ATTACH PARTITION "{name}" '
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )
    return True


def ensure_partitions(engine: Engine, today: date | None = None, days_ahead: int = DAYS_AHEAD) -> int:
    """Create the partitions of today and the next `days_ahead` days that are missing; returns how many were
    created. A no-op on SQLite and on an unpartitioned table. Safe when several servers call it at once."""
    if engine.dialect.name != "postgresql":
        return 0
    today = today or datetime.now(UTC).date()
    created = 0
    with engine.begin() as connection:
        if not is_partitioned(connection):
            return 0
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
        existing = day_partitions(connection)
        for offset in range(-1, days_ahead + 1):
            day = today + timedelta(days=offset)
            if day not in existing:
                created += create_day_partition(connection, day)
    return created


@dataclass(frozen=True)
class DroppedPartition:
    """A day partition retention dropped (or, dry, would drop), with its rows per product and archived files."""

    day: date
    rows: dict[str, int]
    frames: int


def _expired_everywhere(policies: Mapping[str, RetentionConfig], now: datetime) -> Any:
    """True for a row that is past its product's retention (products without a policy: never)."""
    from inspection.storage.retention import prunable

    terms = [prunable(product, policy, now) for product, policy in policies.items() if policy.pass_days is not None]
    return or_(*terms) if terms else false()


def drop_expired_partitions(
    sessions: sessionmaker[Session],
    policies: Mapping[str, RetentionConfig],
    delete_file: Callable[[str], bool],
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[DroppedPartition]:
    """Drop each day partition in which every row is past its product's retention (`retention.prunable`: each
    class's period passed and no unlabelled audit pick younger than `unreviewed_audit_days`); then delete the
    archived files its rows named. `policies` must hold every product that has rows: a row of a product missing
    from it keeps its day. The check and the drop share one transaction that first locks the partition against
    writes, so a label given meanwhile (which may make a row evidence again) either lands before the check or
    waits and fails with the partition gone. Days that do not qualify are left to the batch deletes.
    """
    engine = sessions.kw["bind"]
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cutoffs = [now - timedelta(days=p.pass_days) for p in policies.values() if p.pass_days is not None]
    if engine.dialect.name != "postgresql" or not cutoffs:
        return []
    with engine.connect() as connection:
        if not is_partitioned(connection):
            return []
        days = sorted(day for day in day_partitions(connection) if _day_bounds(day)[1] <= min(cutoffs))
    expired = _expired_everywhere(policies, now)
    dropped: list[DroppedPartition] = []
    for day in days:
        start, end = _day_bounds(day)
        in_day = [Inspection.received_at >= start, Inspection.received_at < end]
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
            name = partition_name(day)
            if connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
                continue
            if not dry_run:
                connection.execute(text(f'LOCK TABLE "{name}" IN SHARE MODE'))  # no label lands mid-check
            keeps = connection.scalar(select(Inspection.id).where(*in_day, not_(expired)).limit(1))
            if keeps is not None:
                continue
            counted = select(Inspection.product, func.count()).where(*in_day).group_by(Inspection.product)
            rows = {str(product): int(n) for product, n in connection.execute(counted)}
            with_files = or_(Inspection.archive_path.is_not(None), Inspection.anomaly_map_path.is_not(None))
            paths = [
                path
                for pair in connection.execute(
                    select(Inspection.archive_path, Inspection.anomaly_map_path).where(*in_day, with_files)
                )
                for path in pair
                if path
            ]
            if not dry_run:
                ids = select(Inspection.id).where(*in_day).scalar_subquery()
                connection.execute(delete(ShadowScore).where(ShadowScore.inspection_id.in_(ids)))
                connection.execute(text(f'ALTER TABLE {PARENT} DETACH PARTITION "{name}"'))
                connection.execute(text(f'DROP TABLE "{name}"'))
        frames = len(paths) if dry_run else sum(delete_file(path) for path in paths)
        dropped.append(DroppedPartition(day, rows, frames))
    return dropped
