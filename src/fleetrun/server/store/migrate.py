"""Run Alembic migrations from code (the server does this at start)."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

SCRIPT_LOCATION = "fleetrun.server.store:migrations"


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together take turns; the lock ends with the transaction.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(847001)")
    command.upgrade(config(connection), "head")


@cache
def head() -> str:
    """The schema revision this code runs on."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def current(session: Session) -> str | None:
    """The schema revision the database is at."""
    return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
