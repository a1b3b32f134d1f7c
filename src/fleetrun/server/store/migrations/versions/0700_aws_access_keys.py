"""api tokens: AWS-style access keys (id, and the secret sealed with the server key)

Revision ID: 0700
Revises: 0600
Create Date: 2026-12-03 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0700"
down_revision = "0600"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_key_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("secret_sealed", sa.Text(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_api_tokens_access_key_id"), ["access_key_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_api_tokens_access_key_id"), type_="unique")
        batch_op.drop_column("secret_sealed")
        batch_op.drop_column("access_key_id")
