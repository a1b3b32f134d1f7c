"""output alarms, the output chunk queue and its cursors, output retention

Revision ID: 0730
Revises: 0720
Create Date: 2026-12-03 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0730"
down_revision = "0720"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invocations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("output_expired_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "output_chunks",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invocation_id", sa.String(length=36), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_output_chunks")),
        sqlite_autoincrement=True,  # never reuse a number a cursor holds
    )
    op.create_table(
        "output_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("leased_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_lines", sa.BigInteger(), nullable=False),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_output_cursors")),
    )
    op.create_table(
        "alarms",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=True),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("regex", sa.Boolean(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("document_name", sa.String(length=128), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("period_s", sa.Integer(), nullable=False),
        sa.Column("evaluation_periods", sa.Integer(), nullable=False),
        sa.Column("treat_missing", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_alarms")),
    )
    op.create_table(
        "alarm_datapoints",
        sa.Column("alarm", sa.String(length=64), nullable=False),
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("matched", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alarm"],
            ["alarms.name"],
            name=op.f("fk_alarm_datapoints_alarm_alarms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alarm", "period", name=op.f("pk_alarm_datapoints")),
    )
    op.create_table(
        "alarm_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alarm", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("old_state", sa.String(length=24), nullable=False),
        sa.Column("new_state", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alarm"],
            ["alarms.name"],
            name=op.f("fk_alarm_history_alarm_alarms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_history")),
    )
    op.create_index(op.f("ix_alarm_history_alarm"), "alarm_history", ["alarm"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alarm_history_alarm"), table_name="alarm_history")
    op.drop_table("alarm_history")
    op.drop_table("alarm_datapoints")
    op.drop_table("alarms")
    op.drop_table("output_cursors")
    op.drop_table("output_chunks")
    with op.batch_alter_table("invocations", schema=None) as batch_op:
        batch_op.drop_column("output_expired_at")
