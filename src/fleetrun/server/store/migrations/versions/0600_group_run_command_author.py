"""group run commands: the author's address, to decide later members as the author

Revision ID: 0600
Revises: 0501
Create Date: 2026-12-03 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0600"
down_revision = "0501"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("group_run_commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("group_run_commands", schema=None) as batch_op:
        batch_op.drop_column("source_ip")
