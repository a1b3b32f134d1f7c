"""api tokens: AWS-style access keys (id, and the secret sealed with the server key);
commands' S3 output destinations and the invocations copied there

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
    op.create_table(
        "command_output_s3",
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key_prefix", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["command_id"],
            ["commands.id"],
            name=op.f("fk_command_output_s3_command_id_commands"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_command_output_s3")),
    )
    op.create_table(
        "output_s3_uploads",
        sa.Column("invocation_id", sa.String(length=36), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invocation_id"],
            ["invocations.id"],
            name=op.f("fk_output_s3_uploads_invocation_id_invocations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("invocation_id", name=op.f("pk_output_s3_uploads")),
    )


def downgrade() -> None:
    op.drop_table("output_s3_uploads")
    op.drop_table("command_output_s3")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_api_tokens_access_key_id"), type_="unique")
        batch_op.drop_column("secret_sealed")
        batch_op.drop_column("access_key_id")
