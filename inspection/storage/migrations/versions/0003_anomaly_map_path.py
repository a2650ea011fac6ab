"""Inspections keep where the model's anomaly map of the frame is stored (drawn over the frame on request).

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
    op.add_column("inspections", sa.Column("anomaly_map_path", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("inspections", "anomaly_map_path")
