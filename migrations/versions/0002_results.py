"""Results a task reports besides its own outcome (pexen.report,
pexen-harness report): one row per reported result, per attempt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_results_run_id_key", "results", ["run_id", "key"])


def downgrade() -> None:
    op.drop_index("ix_results_run_id_key", table_name="results")
    op.drop_table("results")
