"""The hourly rollups summed per UTC day, and indexes led by the line. The day cells are backfilled from the
hour cells in one statement (no row is read: about one hour cell per ten rows at 10M rows, docs/scale.md). A
server of the previous version writing while this runs would leave its hours out of the day cells: stop them for
it (seconds), or run `inspection db rollups --rebuild` after.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEYS = (
    "product, line_id, {time}, verdict, defect_type, feedback_label, audit_stratum, audit_probability, audit_selected"
)


def upgrade() -> None:
    op.create_table(
        "inspection_daily_rollups",
        sa.Column("product", sa.String(64), primary_key=True),
        sa.Column("line_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("verdict", sa.String(16), primary_key=True),
        sa.Column("defect_type", sa.String(64), primary_key=True),
        sa.Column("feedback_label", sa.String(64), primary_key=True),
        sa.Column("audit_stratum", sa.String(32), primary_key=True),
        sa.Column("audit_probability", sa.Float, primary_key=True, autoincrement=False),
        sa.Column("audit_selected", sa.Boolean, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
    )
    op.create_index("ix_inspection_daily_rollups_day", "inspection_daily_rollups", ["day"])
    op.create_index("ix_inspection_daily_rollups_product_day", "inspection_daily_rollups", ["product", "day"])
    # A line's charts: the hour cells had no index led by the line, so a line's week read every product's cells.
    op.create_index("ix_inspection_rollups_line_hour", "inspection_rollups", ["line_id", "hour"])
    op.create_index("ix_inspection_daily_rollups_line_day", "inspection_daily_rollups", ["line_id", "day"])
    grouped = _KEYS.format(time="substr(hour, 1, 10)")
    op.execute(
        f"INSERT INTO inspection_daily_rollups ({_KEYS.format(time='day')}, n, latency_ms_sum)"
        f" SELECT {grouped}, sum(n), sum(latency_ms_sum) FROM inspection_rollups GROUP BY {grouped}"
    )


def downgrade() -> None:
    op.drop_index("ix_inspection_daily_rollups_line_day", table_name="inspection_daily_rollups")
    op.drop_index("ix_inspection_rollups_line_hour", table_name="inspection_rollups")
    op.drop_index("ix_inspection_daily_rollups_product_day", table_name="inspection_daily_rollups")
    op.drop_index("ix_inspection_daily_rollups_day", table_name="inspection_daily_rollups")
    op.drop_table("inspection_daily_rollups")
