"""The first journal schema: runs, tasks (a projection), events (append-only).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("suite", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("controller_pid", sa.Integer),
        sa.Column("controller_started", sa.Float),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("exit_code", sa.Integer),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reboot_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("queued_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("time_used", sa.Float, nullable=False, server_default="0"),
        sa.Column("pid", sa.Integer),
        sa.Column("pid_started", sa.Float),
        sa.Column("boot_id", sa.String(64)),
        sa.Column("token", sa.String(64)),
        sa.Column("ret", sa.Text),
        sa.Column("ret_restorable", sa.Boolean),
        sa.Column("shared", sa.Text),
        sa.Column("shared_restorable", sa.Boolean),
        sa.Column("exc_type", sa.String(255)),
        sa.Column("exc_text", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("meta", sa.Text),
        sa.UniqueConstraint("run_id", "key"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_events_run_id_id", "events", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_run_id_id", "events")
    op.drop_table("events")
    op.drop_table("tasks")
    op.drop_table("runs")
