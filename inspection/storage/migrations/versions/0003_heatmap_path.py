"""Inspections keep where their heatmap (the model's anomaly map over the archived frame) is stored.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("heatmap_path", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("inspections", "heatmap_path")
