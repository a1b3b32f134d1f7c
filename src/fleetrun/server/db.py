"""The database: SQLAlchemy over SQLite (embedded default) or PostgreSQL (psycopg 3).

Store functions are plain synchronous SQLAlchemy; each transaction runs whole in a
worker thread, so the event loop pays one thread hop per transaction rather than one
per statement:

    command = await db.write(lambda tx: send_command(tx.session, body, principal=None))
    nodes = await db.read(lambda session: read_nodes(session))

`write` commits on return and then runs the callbacks registered with
`Tx.after_commit` on the event loop (wake-ups, notifications), so nothing is
announced that was not stored. SQLite has one writer at a time: its writes all run
on one thread, so a busy database never surfaces as an error; reads run beside it
(WAL). PostgreSQL runs writers in parallel; when two of them deadlock (or a
serializable transaction conflicts), it aborts one, and `write` runs that one again
from the start, so the caller never sees it. So does a transaction that would write an
invocation whose status another changed since it read it (the status is the row's
version, see store/tables.py). A transaction's work must therefore
depend only on what it reads in its transaction (store functions do).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from fleetrun.core.errors import ValidationError
from fleetrun.server.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL's deadlock_detected and serialization_failure: the transaction was
# aborted so that another could go on, and may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 5


def sync_url(url: str) -> str:
    """The SQLAlchemy URL for a URL an operator wrote (or a ValidationError)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValidationError(
            f"Database URL {url!r} is malformed: use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB."
        ) from exc
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if driver in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValidationError(
        f"Database driver {driver!r} is not supported: use sqlite:/// or postgresql+psycopg://."
    )


# What a transaction tells the other replicas once it commits (server/bus.py): in the
# session's info, so that an event hook without the Tx at hand can add to it.
PUBLISH = "fleetrun.publish"


def publish(session: Session, kind: str, keys: Iterable[str] = ()) -> None:
    """Tell the other replicas, when this session's transaction commits, that `kind`
    happened to these keys (command ids, node ids: what the kind is about)."""
    session.info.setdefault(PUBLISH, {}).setdefault(kind, set()).update(keys)


class Tx:
    """A write transaction and what to do once it is committed."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.after: list[Callable[[], Any]] = []

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self.after.append(callback)

    def publish(self, kind: str, *keys: str) -> None:
        """See `publish`: sent in this transaction, so delivered when, and only if, it
        commits."""
        publish(self.session, kind, keys)


class Database:
    def __init__(self, url: str, *, readers: int = 4, metrics: Metrics | None = None) -> None:
        self.url = sync_url(url)
        self.metrics = metrics or Metrics()
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=readers + 1,
                max_overflow=0,
            )
        else:
            kwargs.update(pool_size=readers + 4, max_overflow=10, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Set by the bus on PostgreSQL: turns what a transaction published into its
        # NOTIFY statement, run just before it commits.
        self.notifier: Callable[[dict[str, set[str]]], Any] | None = None
        # SQLite: one writer thread. PostgreSQL: writers in parallel, rows locked as needed.
        self._writer = ThreadPoolExecutor(1 if self.is_sqlite else readers + 2, "db-write")
        self._reader = ThreadPoolExecutor(readers, "db-read")

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        """Where this database's sessions come from: event hooks attach here, not to
        SQLAlchemy's global Session class."""
        return self._sessions

    async def read(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            started = time.perf_counter()
            with self._sessions() as session:
                if not self.is_sqlite:  # SQLite: one snapshot per transaction already
                    session.connection(execution_options=_ONE_MOMENT)
                result = work(session)
            self.metrics.transaction("read", started)
            return result

        # The caller's context goes along: a log line from the thread names its request.
        run_here = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(self._reader, run_here, run)

    async def write(self, work: Callable[[Tx], T]) -> T:
        def once() -> tuple[T, Tx]:
            with self._sessions() as session, session.begin():
                # SQLite: take the write lock first, so what the work reads stays true.
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
                tx = Tx(session)
                result = work(tx)
                if self.notifier is not None:
                    session.flush()  # what the flush changes may publish too
                    published = session.info.pop(PUBLISH, None)
                    if published:
                        session.execute(self.notifier(published))
                return result, tx

        def run() -> tuple[T, Tx]:
            started = time.perf_counter()
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                try:
                    done = once()
                    self.metrics.transaction("write", started)
                    return done
                except (DBAPIError, StaleDataError) as exc:
                    if attempt == WRITE_ATTEMPTS or not _retryable(exc):
                        raise
                    log.info("transaction aborted (%s); running it again", _reason(exc))
                    self.metrics.retried(_reason_label(exc))
                    time.sleep(random.uniform(0.005, 0.02) * attempt)
            raise AssertionError("unreachable")

        run_here = contextvars.copy_context().run
        result, tx = await asyncio.get_running_loop().run_in_executor(self._writer, run_here, run)
        for callback in tx.after:
            callback()
        return result

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic)."""
        from fleetrun.server.store.migrate import upgrade

        with self.engine.begin() as conn:
            upgrade(conn)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self.engine.dispose()


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _reason(exc: DBAPIError | StaleDataError) -> str:
    if isinstance(exc, StaleDataError):
        return "a row it read was changed by another transaction"
    return _sqlstate(exc) or type(exc.orig).__name__


def _reason_label(exc: DBAPIError | StaleDataError) -> str:
    """A bounded label for a retry: stale_row, deadlock or serialization."""
    if isinstance(exc, StaleDataError):
        return "stale_row"
    return {"40P01": "deadlock", "40001": "serialization"}.get(_sqlstate(exc) or "", "other")


def _retryable(exc: DBAPIError | StaleDataError) -> bool:
    # StaleDataError: a row's version (an invocation's status) changed between this
    # transaction's read and its write; run again, it reads the newer one.
    return isinstance(exc, StaleDataError) or _sqlstate(exc) in RETRYABLE_SQLSTATES


# A read sees every statement at one moment: PostgreSQL's READ COMMITTED would let a
# write commit between two of its queries. Read-only, so it never fails to serialize.
_ONE_MOMENT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling begins only before a write, so a read saw
    # each statement's moment, not one: a page could show a run Running beside the
    # provisioning state of before. SQLAlchemy begins each transaction instead.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """One snapshot per transaction: readers see every statement at one moment; the
    writer (`Database.write`) takes the write lock at BEGIN IMMEDIATE."""
    immediate = conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
