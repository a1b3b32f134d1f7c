"""The database: one async engine over SQLite (embedded default) or PostgreSQL.

`Database.read()` gives a session for queries; `Database.write()` gives a session in a
transaction that commits on exit and then runs the callbacks registered with
`Tx.after_commit` (wake-ups, notifications), so nothing is announced that was not
stored. SQLite has one writer at a time: in-process writes are serialised with a lock,
so a busy database never surfaces as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from fleetrun.core.errors import ValidationError

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a URL an operator wrote."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValidationError(
            f"Database URL {url!r} is malformed: use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB."
        ) from exc
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"):
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if driver in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg_async"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValidationError(
        f"Database driver {driver!r} is not supported: use sqlite:/// or postgresql+psycopg://."
    )


class Tx:
    """A write transaction and what to do once it is committed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after: list[Callable[[], Any]] = []

    def after_commit(self, callback: Callable[[], Any]) -> None:
        self._after.append(callback)


class Database:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self._write_lock or _no_lock():
            async with self._sessions() as session, session.begin():
                tx = Tx(session)
                yield tx
        for callback in tx._after:
            callback()

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic)."""
        from fleetrun.server.store.migrate import upgrade

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
