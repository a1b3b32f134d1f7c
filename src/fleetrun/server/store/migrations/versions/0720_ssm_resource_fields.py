"""documents: tags, version names; activations: the IAM role SSM clients name

Revision ID: 0720
Revises: 0710
Create Date: 2026-12-03 21:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0720"
down_revision = "0710"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("document_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version_name", sa.String(length=128), nullable=True))
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("iam_role", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activations", schema=None) as batch_op:
        batch_op.drop_column("iam_role")
    with op.batch_alter_table("document_versions", schema=None) as batch_op:
        batch_op.drop_column("version_name")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("tags")
