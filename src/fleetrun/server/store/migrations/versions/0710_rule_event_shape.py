"""rules: the shape their events are matched and delivered in (fleetrun or aws)

Revision ID: 0710
Revises: 0700
Create Date: 2026-12-03 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0710"
down_revision = "0700"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "event_shape", sa.String(length=16), nullable=False, server_default="fleetrun"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_column("event_shape")
