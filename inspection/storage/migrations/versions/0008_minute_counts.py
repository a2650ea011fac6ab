"""Frames per product, line and UTC minute for the throughput chart, backfilled for the two days before the newest
row (older minutes are never shown). Online: a server of the previous version keeps writing rows while this runs,
and those rows are not counted; `inspection db rollups --rebuild` recounts the minute cells too.

Revision ID: 0008
Revises: 0007
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEEP_DAYS = 2  # inspection.storage.minute_counts.KEEP_DAYS when this was written
_MINUTE_SQLITE = "strftime('%Y-%m-%dT%H:%M', received_at)"
_MINUTE_POSTGRES = """to_char(timezone('UTC', received_at), 'YYYY-MM-DD"T"HH24:MI')"""


def upgrade() -> None:
    op.create_table(
        "inspection_minute_counts",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("line_id", sa.String(64), primary_key=True),
        sa.Column("minute", sa.String(16), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
    )
    op.create_index("ix_inspection_minute_counts_minute", "inspection_minute_counts", ["minute"])
    connection = op.get_bind()
    newest = connection.execute(sa.text("SELECT max(received_at) FROM inspections")).scalar()
    if newest is None:
        return
    postgres = connection.dialect.name == "postgresql"
    if isinstance(newest, str):  # SQLite hands back the stored text
        newest = datetime.fromisoformat(newest)
    newest = newest.astimezone(UTC) if newest.tzinfo else newest.replace(tzinfo=UTC)
    start = newest.replace(minute=0, second=0, microsecond=0) - timedelta(days=KEEP_DAYS)
    bound = start if postgres else start.replace(tzinfo=None).isoformat(sep=" ")  # SQLite compares stored text
    minute = _MINUTE_POSTGRES if postgres else _MINUTE_SQLITE
    # One statement over two days of rows, read through the received_at index.
    connection.execute(
        sa.text(
            "INSERT INTO inspection_minute_counts (product, line_id, minute, n, latency_ms_sum)"
            f" SELECT product, coalesce(line_id, ''), {minute}, count(*), coalesce(sum(latency_ms), 0.0)"
            f" FROM inspections WHERE received_at >= :start GROUP BY product, coalesce(line_id, ''), {minute}"
        ),
        {"start": bound},
    )


def downgrade() -> None:
    op.drop_index("ix_inspection_minute_counts_minute", table_name="inspection_minute_counts")
    op.drop_table("inspection_minute_counts")
