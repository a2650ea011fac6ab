"""The audit sample: each answered frame's selection probability, whether it was drawn, and its design stratum;
and the history of each product's audit rates (who set them and why).

Rows answered before this revision keep audit_probability NULL: they were never part of an audit design, and the
live estimates leave them out (saying how many).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Three nullable / defaulted columns: an instant catalog change on PostgreSQL (no table rewrite) and SQLite.
    op.add_column("inspections", sa.Column("audit_probability", sa.Float, nullable=True))
    op.add_column("inspections", sa.Column("audit_selected", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("inspections", sa.Column("audit_stratum", sa.String(32), nullable=True))
    op.create_index("ix_inspections_audit_queue", "inspections", ["product", "audit_selected", "received_at"])
    op.create_table(
        "audit_policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("pass_rate", sa.Float, nullable=False),
        sa.Column("defect_rate", sa.Float, nullable=False),
        sa.Column("pass_bands", sa.Text, nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    op.create_index("ix_audit_policies_product", "audit_policies", ["product", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_policies_product", table_name="audit_policies")
    op.drop_table("audit_policies")
    op.drop_index("ix_inspections_audit_queue", table_name="inspections")
    with op.batch_alter_table("inspections") as batch:  # SQLite drops columns by rebuilding the table
        batch.drop_column("audit_stratum")
        batch.drop_column("audit_selected")
        batch.drop_column("audit_probability")
