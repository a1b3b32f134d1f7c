"""The alarm evaluator: counts output lines for every alarm and moves alarms between
states (the decision is `core.alarms.evaluate`).

It runs when output is stored (woken after the commit) and every `sweep_interval_s`,
so an alarm fires as soon as the line that crosses its threshold is stored, and goes
back to OK when a period ends without it. Across replicas, counting is done once: the
replica that holds the lease on the "alarms" cursor of the output log counts a batch
and moves the cursor in one transaction, which commits only if it still holds the
lease. State changes are updates conditioned on the state read, so whichever replica
evaluates, each change is one history row and one `Output Alarm State-change
Notification` event, which rules and channels deliver like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from fleetrun.core import alarms as core
from fleetrun.core.errors import NotFoundError
from fleetrun.core.targets import Candidate, Target, select
from fleetrun.server import outputlog
from fleetrun.server.db import Tx
from fleetrun.server.store import alarms as store
from fleetrun.server.store import groups as group_store
from fleetrun.server.store.tables import Alarm

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

CURSOR = "alarms"
LEASE_S = 15.0
KEPT_PERIODS = 25  # datapoints kept per alarm beyond its evaluation window


class LostLeaseError(Exception):
    """Another replica took the cursor over: this batch is its to count."""


class AlarmEvaluator:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.owner = f"srv-{secrets.token_hex(6)}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._matchers: dict[tuple[str, bool], core.LineMatcher] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alarms")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Run a pass now (output was stored: `ServerState.output_stored`)."""
        self._wake.set()

    async def _run(self) -> None:
        interval = self.state.settings.sweep_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("evaluating alarms failed; trying again shortly")

    async def run_once(self) -> None:
        """Count what arrived, then evaluate every alarm. The writer (SQLite has one) is
        spared: a pass with no new output and no change of state only reads."""
        created = self.state.output_log.created
        exists, behind = await self.state.db.read(_look)
        self.state.output_log.alarms_seen(exists, created)
        if not exists:
            return
        while behind:
            batch = await self.state.db.write(self._claim)
            if batch is None or not batch.chunks:
                break
            read = await outputlog.lines_of(
                self.state.output, batch.chunks, batch.labels, batch.elsewhere
            )
            try:
                await self.state.db.write(partial(self._count, batch=batch, read=read))
            except LostLeaseError:
                break
            if read.unreadable:
                log.warning(
                    "counting output for alarms: %s", outputlog.unreadable_message(read.unreadable)
                )
            if read.handed_over(batch.chunks) or len(batch.chunks) < outputlog.BATCH:
                break
        now = self.state.clock.now()
        changes = await self.state.db.read(partial(_decide, now=now))
        if changes:
            await self.state.db.write(partial(_apply, changes=changes, now=now))

    def _claim(self, tx: Tx) -> outputlog.Batch | None:
        now = self.state.clock.now()
        return outputlog.claim_batch(
            tx.session, CURSOR, self.owner, now, LEASE_S, self.state.replica_id
        )

    def _count(self, tx: Tx, *, batch: outputlog.Batch, read: outputlog.Read) -> None:
        session, now = tx.session, self.state.clock.now()
        if not outputlog.settle(session, CURSOR, self.owner, batch.chunks, read, 0, now):
            raise LostLeaseError
        if not read.lines:
            return
        for alarm in store.read_alarms(session):
            counts = self._counts(session, alarm, read.lines)
            if counts:
                store.add_counts(session, alarm.name, counts)

    def _counts(
        self, session: Session, alarm: Alarm, lines: Sequence[outputlog.Line]
    ) -> dict[int, core.Datapoint]:
        targets = _expanded(session, [Target(**t) for t in alarm.targets])
        if targets is None:
            return {}
        matcher = self._matcher(alarm)
        in_scope: dict[str, bool] = {}
        lines_per: dict[int, int] = defaultdict(int)
        matched_per: dict[int, int] = defaultdict(int)
        for line in lines:
            if alarm.document_name and line.document_name != alarm.document_name:
                continue
            if line.node_id not in in_scope:
                node = Candidate(line.node_id, line.tags)
                in_scope[line.node_id] = bool(select(targets, [node]))
            if not in_scope[line.node_id]:
                continue
            period = core.period_of(line.at.timestamp(), alarm.period_s)
            lines_per[period] += 1
            matched_per[period] += matcher(line.text)
        return {p: core.Datapoint(n, matched_per[p]) for p, n in lines_per.items()}

    def _matcher(self, alarm: Alarm) -> core.LineMatcher:
        key = (alarm.pattern, alarm.regex)
        matcher = self._matchers.get(key)
        if matcher is None:
            matcher = self._matchers[key] = core.LineMatcher(alarm.pattern, alarm.regex)
        return matcher


def _look(session: Session) -> tuple[bool, bool]:
    """Whether an alarm exists, and whether output arrived past the alarms' cursor."""
    if not store.any_alarm(session):
        return False, False
    return True, outputlog.behind(session, CURSOR)


def _decide(session: Session, *, now: datetime) -> list[tuple[str, str, core.Decision]]:
    """The alarms whose state should change: (name, state read, decision)."""
    changes = []
    for alarm in store.read_alarms(session):
        current = core.period_of(now.timestamp(), alarm.period_s)
        points = store.read_points(session, alarm.name, current - alarm.evaluation_periods)
        decision = core.evaluate(
            store.spec_of(alarm), points, current, core.AlarmState(alarm.state)
        )
        if decision.state != alarm.state:
            changes.append((alarm.name, alarm.state, decision))
    return changes


def _apply(tx: Tx, *, changes: list[tuple[str, str, core.Decision]], now: datetime) -> None:
    """Make the changes decided, each only if the alarm is still in the state read."""
    for name, read_state, decision in changes:
        alarm = tx.session.get(Alarm, name)
        if alarm is None or alarm.state != read_state:
            continue  # deleted, or another replica moved it meanwhile
        if store.change_state(tx.session, alarm, decision, now):
            log.info("alarm %s: %s -> %s", name, read_state, decision.state)
        current = core.period_of(now.timestamp(), alarm.period_s)
        store.prune_points(tx.session, name, current - alarm.evaluation_periods - KEPT_PERIODS)


def _expanded(session: Session, targets: list[Target]) -> list[Target] | None:
    """The alarm's targets with groups expanded; None when a group named is gone."""
    try:
        return group_store.expand(session, targets)
    except NotFoundError:
        return None
