"""Shadow scores: a challenger's verdict on each frame the champion answered, for promotion evidence.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_scores",
        sa.Column("inspection_id", sa.String(36), primary_key=True),
        sa.Column("model_version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("defect_probability", sa.Float, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("defect_type", sa.String(64)),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shadow_scores_inspection", "shadow_scores", ["inspection_id"])
    op.create_index("ix_shadow_scores_product_version", "shadow_scores", ["product", "model_version"])


def downgrade() -> None:
    op.drop_index("ix_shadow_scores_product_version", table_name="shadow_scores")
    op.drop_index("ix_shadow_scores_inspection", table_name="shadow_scores")
    op.drop_table("shadow_scores")
