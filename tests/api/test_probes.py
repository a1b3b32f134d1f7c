"""The unauthenticated probes: /healthz (the process answers), /readyz (it can serve:
started, and its database answers) and /version."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from fleetrun import __version__
from fleetrun.core import protocol
from tests.harness import _pg_admin_url
from tests.inprocess import App


def test_a_started_server_is_ready_and_says_its_version(app: App):
    assert app.http is not None
    ready = app.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "replica": app.http.app.state.fleet.replica_id},
    )
    version = app.http.get("/version")
    assert version.json() == {
        "version": __version__,
        "protocol": protocol.PROTOCOL_VERSION,
        "min_protocol": protocol.MIN_PROTOCOL_VERSION,
    }
    assert app.client.server_version().version == __version__


def _lose_the_database(app: App) -> None:
    """The database stops taking connections, as when it is down or unreachable."""
    fleet = app.http.app.state.fleet  # type: ignore[union-attr]
    if app.db.pg_name is None:
        path = Path(app.db.url.removeprefix("sqlite:///"))
        path.unlink()
        path.mkdir()  # in its place, something SQLite cannot open
        # Then the pool's connections go (they would still read the old file): any
        # connection made from now on is to the directory.
        fleet.db.engine.dispose()
        return
    assert app.db.base is not None
    with psycopg.connect(_pg_admin_url(app.db.base), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{app.db.pg_name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (app.db.pg_name,),
        )


def _restore_the_database(app: App) -> None:
    if app.db.pg_name is None:
        path = Path(app.db.url.removeprefix("sqlite:///"))
        shutil.rmtree(path)
        return
    assert app.db.base is not None
    with psycopg.connect(_pg_admin_url(app.db.base), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{app.db.pg_name}" ALLOW_CONNECTIONS true')


def test_a_server_whose_database_does_not_answer_is_not_ready_but_alive(app: App):
    assert app.http is not None
    _lose_the_database(app)
    try:
        ready = app.http.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "not ready", "reason": "the database does not answer"},
        )
        assert app.http.get("/healthz").status_code == 200
    finally:
        _restore_the_database(app)


def test_a_server_on_a_schema_of_another_version_is_not_ready(app: App):
    """A replica of another version migrated the database: this one says so, and is
    ready again once the schema is its own."""
    from sqlalchemy import text

    engine = app.http.app.state.fleet.db.engine  # type: ignore[union-attr]
    with engine.begin() as conn:
        ours = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        conn.execute(text("UPDATE alembic_version SET version_num = '9990'"))
    try:
        ready = app.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == (
            f"the database schema is at revision 9990, this server's is {ours}: "
            "run one version of fleetrun on every replica"
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": ours})
    assert app.http.get("/readyz").status_code == 200
