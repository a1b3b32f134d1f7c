"""output_chunks.stored_by: the replica whose output store holds a chunk's bytes

Revision ID: 0770
Revises: 0760
Create Date: 2026-12-04 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0770"
down_revision = "0760"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null on rows logged before: read wherever the reader is, as they were.
    with op.batch_alter_table("output_chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored_by", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("output_chunks", schema=None) as batch_op:
        batch_op.drop_column("stored_by")
