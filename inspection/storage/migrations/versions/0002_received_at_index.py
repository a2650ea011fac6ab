"""Index inspections by received_at alone: the dashboard's time-window queries span every product and line.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inspections_received", "inspections", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_inspections_received", table_name="inspections")
