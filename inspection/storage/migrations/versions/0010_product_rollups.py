"""The hourly rollups summed over each product's lines, for a product's (and the plant's) hourly and shift charts.
Backfilled from the hour cells in one statement (no row is read). A server of the previous version writing while
this runs would leave its hours out of the product cells: stop them for it (seconds), or run
`inspection db rollups --rebuild` after.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_KEYS = "product, hour, verdict, defect_type, feedback_label, audit_stratum, audit_probability, audit_selected"


def upgrade() -> None:
    op.create_table(
        "inspection_product_rollups",
        sa.Column("product", sa.String(64), primary_key=True),
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
    op.create_index("ix_inspection_product_rollups_product_hour", "inspection_product_rollups", ["product", "hour"])
    op.create_index("ix_inspection_product_rollups_hour", "inspection_product_rollups", ["hour"])
    op.execute(
        f"INSERT INTO inspection_product_rollups ({_KEYS}, n, latency_ms_sum)"
        f" SELECT {_KEYS}, sum(n), sum(latency_ms_sum) FROM inspection_rollups GROUP BY {_KEYS}"
    )


def downgrade() -> None:
    op.drop_index("ix_inspection_product_rollups_hour", table_name="inspection_product_rollups")
    op.drop_index("ix_inspection_product_rollups_product_hour", table_name="inspection_product_rollups")
    op.drop_table("inspection_product_rollups")
