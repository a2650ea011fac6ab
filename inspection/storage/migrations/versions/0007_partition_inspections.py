"""PostgreSQL: `inspections` becomes a table partitioned by UTC day of `received_at` (docs/scale.md).

The primary key becomes (id, received_at): a partitioned table's unique keys must hold its partition key. The
ORM still finds a row by its id alone (a UUID4, unique by construction), through that key's leading column.

The move, in the migration's transaction (a documented short stop: servers of the previous version must be
stopped, as for 0006; about 20 s per million rows on the development machine, docs/scale.md):
the old table is renamed aside, the partitioned one created with the same columns and indexes, a partition
per day from the oldest row's to a week ahead plus a default partition, then the rows are copied one UTC day per
statement (each statement reads one day through the old table's received_at index, so none holds more than a
day in memory or sorts the whole table), counted against the old table, and the old table dropped. Nothing is
lost: the migration fails, and rolls back whole, if the counts differ. SQLite: no change.

Revision ID: 0007
Revises: 0006
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD = "inspections_unpartitioned"
INDEXES = {
    "ix_inspections_product_received": "product, received_at",
    "ix_inspections_line_received": "line_id, received_at",
    "ix_inspections_received": "received_at",
    "ix_inspections_audit_queue": "product, audit_selected, received_at",
}


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    from inspection.storage.partitions import DAYS_AHEAD, DEFAULT_PARTITION, create_day_partition

    run = connection.exec_driver_sql
    run(f"ALTER TABLE inspections RENAME TO {OLD}")
    run(f"ALTER TABLE {OLD} RENAME CONSTRAINT inspections_pkey TO {OLD}_pkey")
    for name in INDEXES:
        run(f"ALTER INDEX {name} RENAME TO {name}_old")
    run(f"CREATE TABLE inspections (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (received_at)")
    run("ALTER TABLE inspections ADD CONSTRAINT inspections_pkey PRIMARY KEY (id, received_at)")
    for name, columns in INDEXES.items():
        run(f"CREATE INDEX {name} ON inspections ({columns})")
    run(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF inspections DEFAULT")

    first, last, total = connection.execute(
        sa.text(f"SELECT min(received_at), max(received_at), count(*) FROM {OLD}")
    ).one()
    today = datetime.now(UTC).date()
    first_day = min(first.astimezone(UTC).date(), today) if first is not None else today
    last_day = max(last.astimezone(UTC).date(), today) if last is not None else today
    day = first_day - timedelta(days=1)
    while day <= last_day + timedelta(days=DAYS_AHEAD):
        create_day_partition(connection, day)
        day += timedelta(days=1)
    if first is not None:
        day = first.astimezone(UTC).date()
        while day <= last.astimezone(UTC).date():
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            connection.execute(
                sa.text(f"INSERT INTO inspections SELECT * FROM {OLD} WHERE received_at >= :a AND received_at < :b"),
                {"a": start, "b": start + timedelta(days=1)},
            )
            day += timedelta(days=1)
    copied = connection.scalar(sa.text("SELECT count(*) FROM inspections"))
    if copied != total:
        raise RuntimeError(f"partitioning copied {copied} of {total} inspection rows; rolled back")
    run(f"DROP TABLE {OLD}")


def downgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    run = connection.exec_driver_sql
    run(f"CREATE TABLE {OLD} (LIKE inspections INCLUDING DEFAULTS)")
    run(f"INSERT INTO {OLD} SELECT * FROM inspections")
    run("DROP TABLE inspections CASCADE")
    run(f"ALTER TABLE {OLD} RENAME TO inspections")
    run("ALTER TABLE inspections ADD CONSTRAINT inspections_pkey PRIMARY KEY (id)")
    for name, columns in INDEXES.items():
        run(f"CREATE INDEX {name} ON inspections ({columns})")
