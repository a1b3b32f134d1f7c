"""Between replicas: what happened, told at once to the replica it concerns.

A replica acts only on the agent sessions it holds, and any replica may be the one an
operator asked. So what one replica commits that another must act on is published on
PostgreSQL's `LISTEN/NOTIFY` channel `fleetrun`:

    dispatch   invocations were released: deliver what is deliverable
    changed    these long-poll keys changed (commands, an invocation's output)
    cancel     tell these agents ("NODE INVOCATION") to stop
    deleted    these nodes were deleted: their agents go
    access     a token, principal, policy or role changed: forget who tokens speak for
    alarm-created  an output alarm was created: note stored output for it from now on

A transaction publishes with `Tx.publish` (or `db.publish` on its session); its messages
go out as one NOTIFY in that transaction, so PostgreSQL delivers them when it commits
and never when it does not.

Messages are hints, never the truth: the receiver reads the database. A message lost
(the listening connection dropped) costs only time: on every (re)connect the replica
acts as if it had been told everything, and the dispatcher's periodic pass stays as
the safety net. A replica ignores its own messages (it acted on them after commit).
With SQLite there is one process, and nothing to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Executable, func, select
from sqlalchemy.engine import make_url

from fleetrun.server.db import Database

log = logging.getLogger(__name__)

CHANNEL = "fleetrun"
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
RECONNECT_S = (0.5, 10.0)  # first and longest wait before listening again

# A handler gets the keys published, or None: "all of them" (too many to send, or
# missed while the connection was down).
Handler = Callable[[list[str] | None], Any]


def encode(sender: str, published: dict[str, set[str]]) -> str:
    """One payload under PostgreSQL's limit: the kinds with the most keys say "all"
    (null) until it fits."""
    messages: dict[str, list[str] | None] = {k: sorted(v) for k, v in published.items()}
    while True:
        payload = json.dumps({"r": sender, "m": messages}, separators=(",", ":"))
        if len(payload.encode()) <= MAX_PAYLOAD:
            return payload
        longest = max(messages, key=lambda k: len(messages[k] or []))
        if not messages[longest]:
            raise AssertionError("a bus payload of kinds alone is over the limit")
        messages[longest] = None


def decode(payload: str) -> tuple[str, dict[str, list[str] | None]]:
    data = json.loads(payload)
    return str(data["r"]), dict(data["m"])


class Bus:
    def __init__(self, db: Database, replica_id: str) -> None:
        self.db = db
        self.replica_id = replica_id
        self.enabled = not db.is_sqlite
        self._handlers: dict[str, Handler] = {}
        self._on_connect: list[Callable[[], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # listening now
        if self.enabled:
            db.notifier = self._statement

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    def on_connect(self, callback: Callable[[], Any]) -> None:
        """Run each time listening (re)starts: what was missed meanwhile is unknown."""
        self._on_connect.append(callback)

    def _statement(self, published: dict[str, set[str]]) -> Executable:
        return select(func.pg_notify(CHANNEL, encode(self.replica_id, published)))

    # -- listening --------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._listen_loop(), name="bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_loop(self) -> None:
        import psycopg  # PostgreSQL only: SQLite installs never need it

        conninfo = make_url(self.db.url).set(drivername="postgresql")
        wait_s = RECONNECT_S[0]
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo.render_as_string(hide_password=False), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    wait_s = RECONNECT_S[0]
                    for callback in self._on_connect:
                        callback()
                    async for notice in conn.notifies():
                        self.received(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listening to the other replicas failed (%s); again in %.1f s", exc, wait_s
                )
            self.connected.clear()
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, RECONNECT_S[1])

    def received(self, payload: str) -> None:
        try:
            sender, messages = decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("a message on the replicas' channel was not ours; ignored")
            return
        if sender == self.replica_id:
            return
        for kind, keys in messages.items():
            handler = self._handlers.get(kind)
            if handler is None:
                continue  # a newer replica's kind: its periodic pass covers it here
            try:
                handler(keys)
            except Exception:
                log.exception("acting on another replica's %r failed", kind)
