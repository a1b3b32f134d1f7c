"""run commands and their runs

Revision ID: 0500
Revises: 0400
Create Date: 2026-11-21 20:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0500"
down_revision = "0400"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=36), nullable=False),
        sa.Column("group_name", sa.String(length=128), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.JSON(), nullable=True),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("current_run_id", sa.String(length=20), nullable=True),
        sa.Column("provisioning_state", sa.String(length=16), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_commands")),
        sa.UniqueConstraint("node_id", "name", name=op.f("uq_run_commands_node_id")),
    )
    op.create_index(op.f("ix_run_commands_node_id"), "run_commands", ["node_id"])
    op.create_index(op.f("ix_run_commands_group_name"), "run_commands", ["group_name"])
    op.create_table(
        "run_command_runs",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("run_command_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=20), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=True),
        sa.Column("execution_state", sa.String(length=16), nullable=False),
        sa.Column("provisioning_state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("output_uri", sa.Text(), nullable=True),
        sa.Column("error_uri", sa.Text(), nullable=True),
        sa.Column("output_sent", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("error_sent", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("sink_message", sa.Text(), nullable=True),
        sa.Column("sink_done", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.ForeignKeyConstraint(
            ["run_command_id"],
            ["run_commands.id"],
            name=op.f("fk_run_command_runs_run_command_id_run_commands"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_command_runs")),
    )
    for column in ("run_command_id", "node_id", "command_id"):
        op.create_index(op.f(f"ix_run_command_runs_{column}"), "run_command_runs", [column])


def downgrade() -> None:
    op.drop_table("run_command_runs")
    op.drop_table("run_commands")
