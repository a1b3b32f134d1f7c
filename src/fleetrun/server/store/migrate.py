"""Run Alembic migrations from code (the server does this at start)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

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
