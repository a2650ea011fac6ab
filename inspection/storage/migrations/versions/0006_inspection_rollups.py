"""Hourly rollups of the inspection rows, backfilled from the rows already stored; the log of retention runs.

The backfill counts one UTC day of rows per statement, so no statement reads the whole table; it runs inside the
migration's transaction, so servers of the previous version must be stopped for it (a short stop: about a
minute for 10M rows, docs/scale.md), or their rows written meanwhile would be missed by the rollups. A server of
this version keeps the rollups itself, and `inspection db rollups --rebuild` recounts any range later.

Revision ID: 0006
Revises: 0005
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_HOUR_SQLITE = "strftime('%Y-%m-%dT%H', received_at)"
_HOUR_POSTGRES = """to_char(timezone('UTC', received_at), 'YYYY-MM-DD"T"HH24')"""
_KEYS = (
    "product, coalesce(line_id, ''), {hour}, verdict, coalesce(defect_type, ''),"
    " coalesce(feedback_label, ''), coalesce(audit_stratum, ''), coalesce(audit_probability, -1.0), audit_selected"
)


def upgrade() -> None:
    op.create_table(
        "inspection_rollups",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("line_id", sa.String(64), primary_key=True),
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("verdict", sa.String(16), primary_key=True),
        sa.Column("defect_type", sa.String(64), primary_key=True),
        sa.Column("feedback_label", sa.String(64), primary_key=True),
        sa.Column("audit_stratum", sa.String(32), primary_key=True),
        sa.Column("audit_probability", sa.Float, primary_key=True, autoincrement=False),
        sa.Column("audit_selected", sa.Boolean, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
    )
    op.create_index("ix_inspection_rollups_hour", "inspection_rollups", ["hour"])
    op.create_index("ix_inspection_rollups_product_hour", "inspection_rollups", ["product", "hour"])
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("complete_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows_deleted", sa.Integer, nullable=False),
        sa.Column("frames_deleted", sa.Integer, nullable=False),
    )
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    first, last = connection.execute(sa.text("SELECT min(received_at), max(received_at) FROM inspections")).one()
    if first is None:
        return
    if isinstance(first, str):  # SQLite hands back the stored text
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    postgres = connection.dialect.name == "postgresql"
    keys = _KEYS.format(hour=_HOUR_POSTGRES if postgres else _HOUR_SQLITE)
    statement = sa.text(
        f"INSERT INTO inspection_rollups SELECT {keys}, count(*), coalesce(sum(latency_ms), 0.0)"
        f" FROM inspections WHERE received_at >= :start AND received_at < :end GROUP BY {keys}"
    )
    day = (first.astimezone(UTC) if first.tzinfo else first).replace(hour=0, minute=0, second=0, microsecond=0)
    end = (last.astimezone(UTC) if last.tzinfo else last) + timedelta(microseconds=1)
    while day < end:
        bounds = {"start": day, "end": day + timedelta(days=1)}
        if not postgres:  # compared as text with the stored wall-clock UTC time
            bounds = {name: value.replace(tzinfo=None).isoformat(sep=" ") for name, value in bounds.items()}
        connection.execute(statement, bounds)
        day += timedelta(days=1)


def downgrade() -> None:
    op.drop_table("retention_runs")
    op.drop_index("ix_inspection_rollups_product_hour", table_name="inspection_rollups")
    op.drop_index("ix_inspection_rollups_hour", table_name="inspection_rollups")
    op.drop_table("inspection_rollups")
