"""group run commands

Revision ID: 0501
Revises: 0500
Create Date: 2026-11-21 20:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0501"
down_revision = "0500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_run_commands",
        sa.Column("group_name", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=36), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("has_secrets", sa.Boolean(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "name", name=op.f("pk_group_run_commands")),
    )


def downgrade() -> None:
    op.drop_table("group_run_commands")
