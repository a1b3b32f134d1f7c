"""Who a token speaks for, remembered between requests.

Every request names a token; looking it up (the token, its principal, the policies
attached to it directly and through roles) was a read transaction of its own on every
request. The answer changes only when access changes, so it is kept here:

- A write that changes access (a token, a principal, a policy, a role or an attachment
  created, changed or deleted, by the ORM or by a bulk statement) clears the cache when
  its transaction commits, in this process at once.
- A lookup that raced such a commit is not kept: `put` takes the generation read before
  the lookup, and drops the answer if access changed since.
- A token's own expiry is checked on every hit.
- Another replica of the same database is told by such a commit (server/bus.py) and
  clears its own. What no replica is told of (`fleetrun server reset-admin-token` run
  beside a live server, a message lost while a replica was not listening) is bounded
  by `ttl_s`: an answer older than that is looked up again.

A bulk statement that leaves access as it was (a token's last use) says so with the
`LEAVES_ACCESS` execution option.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from fleetrun.server.db import publish
from fleetrun.server.store.principals import Identity
from fleetrun.server.store.tables import ApiToken, Attachment, Policy, Principal, Role, RolePolicy

ACCESS = (ApiToken, Attachment, Policy, Principal, Role, RolePolicy)
_ACCESS_TABLES = {model.__tablename__ for model in ACCESS}
LEAVES_ACCESS = "leaves_access"  # execution option of a statement access does not depend on
TTL_S = 2.0
SIZE = 10_000
_CHANGED = "fleetrun.access_changed"  # in Session.info, until the transaction ends


class IdentityCache:
    def __init__(
        self, monotonic: Callable[[], float], *, ttl_s: float = TTL_S, size: int = SIZE
    ) -> None:
        self._monotonic = monotonic
        self._ttl_s = ttl_s
        self._size = size
        self._entries: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()  # database threads commit, the event loop reads

    @property
    def generation(self) -> int:
        """Read before a lookup, handed to `put` after it."""
        return self._generation

    def get(self, key: str, now: datetime) -> Identity | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            identity, cached_at = found
            stale = self._monotonic() - cached_at >= self._ttl_s
            expired = identity.expires_at is not None and identity.expires_at <= now
            if stale or expired:
                del self._entries[key]
                return None
            return identity

    def put(self, key: str, identity: Identity, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # access changed while it was looked up: the answer may be old
            self._entries[key] = (identity, self._monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    # -- watching the writes ---------------------------------------------------------

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Clear on every commit, through these sessions, that changed access."""
        event.listen(sessions, "after_flush", _flushed)
        event.listen(sessions, "do_orm_execute", _executed)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", _rolled_back)

    def _committed(self, session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            self.clear()


def _flushed(session: Session, _context: Any) -> None:
    if any(isinstance(row, ACCESS) for row in (*session.new, *session.dirty, *session.deleted)):
        _changed(session)


def _executed(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    if state.execution_options.get(LEAVES_ACCESS):
        return
    mapper = state.bind_mapper
    if mapper is not None:
        changes = issubclass(mapper.class_, ACCESS)
    else:  # a statement on a bare table
        table = getattr(state.statement, "table", None)
        changes = getattr(table, "name", None) in _ACCESS_TABLES
    if changes:
        _changed(state.session)


def _changed(session: Session) -> None:
    """Access changes in this transaction: forget when it commits, here and on every
    other replica (server/bus.py)."""
    session.info[_CHANGED] = True
    publish(session, "access")


def _rolled_back(session: Session) -> None:
    session.info.pop(_CHANGED, None)
