"""A task's request for a reboot, written by the task itself (pexen.reboot,
pexen-harness reboot), committed before it blocks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("reboot_requested_at", sa.Float))
        batch.add_column(sa.Column("reboot_boot_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("reboot_boot_id")
        batch.drop_column("reboot_requested_at")
