"""output lines and their full-text index, for searching output

Revision ID: 0740
Revises: 0730
Create Date: 2026-12-03 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0740"
down_revision = "0730"
branch_labels = None
depends_on = None

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE output_lines_fts USING fts5("
    "text, content='output_lines', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER output_lines_ai AFTER INSERT ON output_lines BEGIN "
    "INSERT INTO output_lines_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER output_lines_ad AFTER DELETE ON output_lines BEGIN "
    "INSERT INTO output_lines_fts(output_lines_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER output_lines_au AFTER UPDATE OF text ON output_lines BEGIN "
    "INSERT INTO output_lines_fts(output_lines_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); "
    "INSERT INTO output_lines_fts(rowid, text) VALUES (new.id, new.text); END",
]


def upgrade() -> None:
    with op.batch_alter_table("invocation_steps", schema=None) as batch_op:
        for name in ("stdout_indexed", "stderr_indexed"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            )
    op.create_table(
        "output_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("invocation_id", sa.String(length=36), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("node_id", sa.String(length=20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invocation_id"],
            ["invocations.id"],
            name=op.f("fk_output_lines_invocation_id_invocations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_output_lines")),
        sa.UniqueConstraint(
            "invocation_id", "step", "stream", "line_no", name=op.f("uq_output_lines_invocation_id")
        ),
    )
    op.create_index("ix_output_lines_at", "output_lines", ["at"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(
            "CREATE INDEX ix_output_lines_text_fts ON output_lines "
            "USING gin (to_tsvector('simple', text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("output_lines_ai", "output_lines_ad", "output_lines_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS output_lines_fts")
    op.drop_table("output_lines")
    with op.batch_alter_table("invocation_steps", schema=None) as batch_op:
        batch_op.drop_column("stderr_indexed")
        batch_op.drop_column("stdout_indexed")
