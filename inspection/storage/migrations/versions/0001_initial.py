"""Initial schema: inspections and API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(64)),
        sa.Column("camera_id", sa.String(64)),
        sa.Column("frame_id", sa.String(128)),
        sa.Column("captured_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("defect_probability", sa.Float, nullable=False),
        sa.Column("defect_type", sa.String(64)),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("archive_path", sa.String(512)),
        sa.Column("feedback_label", sa.String(64)),
        sa.Column("feedback_at", sa.DateTime(timezone=True)),
        sa.Column("feedback_by", sa.String(64)),
    )
    op.create_index("ix_inspections_product_received", "inspections", ["product", "received_at"])
    op.create_index("ix_inspections_line_received", "inspections", ["line_id", "received_at"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_inspections_line_received", "inspections")
    op.drop_index("ix_inspections_product_received", "inspections")
    op.drop_table("inspections")
