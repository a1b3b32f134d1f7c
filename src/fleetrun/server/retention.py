"""Retention per kind of data: what is deleted when, once across replicas.

- output (`retention_output_s`, `--retention-output 30d`): the bytes of every stream of
  an invocation that ended longer ago, and the tails kept in the database. The
  invocation, its steps, statuses and byte counts stay; reading its output answers 410
  with a sentence saying when it expired. Each sweep claims the invocations it expires
  with one update conditioned on `output_expired_at IS NULL` (RETURNING their ids), so
  when replicas sweep at once each invocation is expired, and its files deleted, by one.
- events and their deliveries: `event_retention_s`, pruned by the outbox.
- the audit log is append-only and never pruned by the server (docs/access-control.md).
- the output log (fleetrun.server.outputlog): rows every reader has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetrun.core.errors import ExpiredError
from fleetrun.core.events import iso
from fleetrun.server import outputlog
from fleetrun.server.alarms import CURSOR as ALARMS_CURSOR
from fleetrun.server.db import Tx
from fleetrun.server.store import outputlines
from fleetrun.server.store.tables import Invocation, InvocationStep

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
BATCH = 500


def check_output(inv: Invocation, retention_s: float) -> None:
    """Refuse to read output that retention deleted, saying so."""
    if inv.output_expired_at is not None:
        kept = f" (output is kept {_days(retention_s)})" if retention_s else ""
        raise ExpiredError(
            f"The output of {inv.command_id} on {inv.node_id} expired on "
            f"{iso(inv.output_expired_at)}{kept}; its status and exit code remain."
        )


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 else f"{seconds:g} seconds"


def expire_output(session: Session, now: datetime, retention_s: float) -> list[tuple[str, str]]:
    """Claim a batch of invocations whose output is due to go: (command, node) each."""
    before = now - timedelta(seconds=retention_s)
    due = list(
        session.execute(
            select(Invocation.id)
            .where(Invocation.ended_at < before, Invocation.output_expired_at.is_(None))
            .limit(BATCH)
        ).scalars()
    )
    if not due:
        return []
    claimed = session.execute(
        update(Invocation)
        .where(Invocation.id.in_(due), Invocation.output_expired_at.is_(None))
        .values(output_expired_at=now)
        .returning(Invocation.id, Invocation.command_id, Invocation.node_id)
        .execution_options(synchronize_session=False)
    ).all()
    ids = [row[0] for row in claimed]
    if ids:
        session.execute(
            update(InvocationStep)
            .where(InvocationStep.invocation_id.in_(ids))
            .values(stdout_tail=b"", stderr_tail=b"")
            .execution_options(synchronize_session=False)
        )
        outputlines.forget(session, ids)  # their lines leave the search index with them
    return [(row[1], row[2]) for row in claimed]


class Retention:
    def __init__(self, state: ServerState, readers: list[str]) -> None:
        self.state = state
        self.readers = readers  # cursors of the output log's readers
        self._task: asyncio.Task[None] | None = None
        self._last = float("-inf")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.state.settings.sweep_interval_s)
            if self.state.clock.monotonic() - self._last < SWEEP_EVERY_S:
                continue
            self._last = self.state.clock.monotonic()
            try:
                await self.sweep()
            except Exception:
                log.exception("the retention sweep failed; trying again later")

    async def sweep(self) -> int:
        """One sweep: expire what is due, prune the output log; invocations expired."""
        expired = 0
        retention_s = self.state.settings.retention_output_s
        while retention_s > 0:
            now = self.state.clock.now()
            pairs = await self.state.db.write(partial(_expire, now=now, retention_s=retention_s))
            for command_id, node_id in pairs:
                await self.state.output.delete_prefix(f"{command_id}/{node_id}")
            expired += len(pairs)
            if len(pairs) < BATCH:
                break
        readers = [*([ALARMS_CURSOR] if self.state.output_log.alarms else []), *self.readers]
        await self.state.db.write(lambda tx: _prune(tx, readers))
        if expired:
            log.info("retention: deleted the output of %d invocations", expired)
        return expired


def _expire(tx: Tx, *, now: datetime, retention_s: float) -> list[tuple[str, str]]:
    return expire_output(tx.session, now, retention_s)


def _prune(tx: Tx, readers: list[str]) -> None:
    outputlog.prune(tx.session, readers)
