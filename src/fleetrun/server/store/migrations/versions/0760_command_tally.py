"""commands.tally: invocations by status, kept as they move rather than recounted

Revision ID: 0760
Revises: 0750
Create Date: 2026-12-04 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0760"
down_revision = "0750"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null: unknown, so every existing command counts its invocations once more.
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tally", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_column("tally")
