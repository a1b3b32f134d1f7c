"""The outbox: events to their rules and notifications, and deliveries to their targets.

Two loops, woken when a transaction writes events and at least every
`outbox_interval_s`:

- the router turns unrouted events into deliveries (fleetrun.server.store.deliveries);
- the deliverer leases due deliveries, sends each (fleetrun.server.senders), and records
  every attempt. A failure that may mend is retried after a capped exponential backoff
  with jitter (`core.delivery.backoff_s`); after `delivery_max_attempts`, or a failure
  no retry can mend, the delivery is dead: `fleetrun rules redrive` gives it new ones.

Both spare the database's writer (SQLite has one): they look with a read before they
write, and while no rule is enabled and no channel exists, events are marked routed in
batches, at most every IDLE_ROUTE_S, instead of after every change.

Delivery is at least once: a server that dies mid-send leaves its lease to run out,
and the delivery is sent again (webhook receivers deduplicate on X-Fleetrun-Event-Id).
Command targets are the exception: the command and the record of the attempt are
written in one transaction, so a command is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from fleetrun.core import delivery
from fleetrun.core.patterns import compile_pattern
from fleetrun.server import events
from fleetrun.server.db import Tx
from fleetrun.server.senders import DELIVERED, FAILED, RETRY, Result, Senders
from fleetrun.server.store import deliveries as store
from fleetrun.server.store.tables import Rule

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

ROUTE_BATCH = 500
PRUNE_EVERY_S = 600.0
CLAIM_BATCH = 50
MAX_IN_FLIGHT = 16
IDLE_ROUTE_S = 2.0  # with nobody listening, events are marked routed this often at most


class Outbox:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.owner = f"srv-{secrets.token_hex(6)}"  # this process, in leases
        self.senders = Senders(state)
        self._route = asyncio.Event()
        self._deliver = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._remove_listener: Any = None
        self._patterns: dict[tuple[str, str], Any] = {}

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def committed() -> None:  # on a database thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.wake)

        self._remove_listener = events.on_committed(committed)
        self._tasks = [
            asyncio.create_task(self._route_loop(), name="outbox-route"),
            asyncio.create_task(self._deliver_loop(), name="outbox-deliver"),
        ]
        self.wake()

    def wake(self) -> None:
        self._route.set()
        self.state.changes.publish(EVENTS_KEY)

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        for task in [*self._tasks, *self._in_flight]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._in_flight, return_exceptions=True)
        await self.senders.close()

    # -- routing --------------------------------------------------------------------

    async def _route_loop(self) -> None:
        interval = self.state.settings.outbox_interval_s
        db = self.state.db
        pruned_at = routed_at = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see changes.py
                    await self._route.wait()
            self._route.clear()
            try:
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    await db.write(self._prune)
                idle = time.monotonic() - routed_at < IDLE_ROUTE_S
                # One read for both questions (this runs after every commit); when
                # nothing can match, the events are marked with the next batch.
                if not await db.read(partial(store.routing_due, idle=idle)):
                    continue
                routed_at = time.monotonic()
                while True:
                    routed, made = await db.write(self._route_batch)
                    if made:
                        self._deliver.set()
                    if routed < ROUTE_BATCH:
                        break
            except Exception:
                log.exception("routing events failed; trying again shortly")
                await asyncio.sleep(1.0)

    def _prune(self, tx: Tx) -> None:
        before = self.state.clock.now() - timedelta(seconds=self.state.settings.event_retention_s)
        if store.prune(tx.session, before):
            log.info("forgot events and deliveries older than %s", before.isoformat())

    def _route_batch(self, tx: Tx) -> tuple[int, int]:
        """Route a batch: the events routed, the deliveries made."""
        return store.route(
            tx.session, self._matcher, limit=ROUTE_BATCH, skip_locked=not self.state.db.is_sqlite
        )

    def _matcher(self, rule: Rule) -> Callable[[dict[str, Any]], bool]:
        """The rule's compiled pattern (cached while it is unchanged). A pattern that no
        longer compiles, or fails on an event, matches nothing rather than stall routing."""
        key = (rule.name, repr(rule.pattern))
        compiled = self._patterns.get(key)
        if compiled is None:
            try:
                matches = compile_pattern(rule.pattern).matches
            except Exception as exc:
                log.error("rule %s has a pattern that does not compile: %s", rule.name, exc)
                matches = _nothing

            def compiled(event: dict[str, Any], name: str = rule.name) -> bool:
                try:
                    return bool(matches(event))
                except Exception:
                    log.exception("rule %s failed on event %s", name, event.get("id"))
                    return False

            self._patterns[key] = compiled
        return compiled

    # -- delivering -----------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        interval = self.state.settings.outbox_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._deliver.wait()
            self._deliver.clear()
            room = MAX_IN_FLIGHT - len(self._in_flight)
            if room <= 0:
                continue
            try:
                if not await self.state.db.read(partial(store.has_due, now=self.state.clock.now())):
                    continue
                claimed = await self.state.db.write(partial(self._claim, min(room, CLAIM_BATCH)))
            except Exception:
                log.exception("claiming deliveries failed; trying again shortly")
                await asyncio.sleep(1.0)
                continue
            for item in claimed:
                task = asyncio.create_task(self._attempt(item), name=f"delivery-{item.id}")
                self._in_flight.add(task)
                task.add_done_callback(self._done)
            if len(claimed) == min(room, CLAIM_BATCH):
                self._deliver.set()  # there may be more due

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._deliver.set()

    def _claim(self, limit: int, tx: Tx) -> list[store.Claimed]:
        settings = self.state.settings
        return store.claim(
            tx.session,
            self.owner,
            now=self.state.clock.now(),
            lease_s=settings.delivery_lease_s,
            limit=limit,
            skip_locked=not self.state.db.is_sqlite,
        )

    async def _attempt(self, claimed: store.Claimed) -> None:
        started = time.monotonic()
        try:
            spec = await self.state.db.read(partial(self.senders.spec, claimed))
            if isinstance(spec, str):
                result = Result(FAILED, spec)
            else:
                result = await self.senders.send(claimed, spec, self.owner)
        except Exception as exc:
            log.exception("delivery %s failed on the server side", claimed.id)
            result = Result(RETRY, f"server error: {type(exc).__name__}")
        if result.recorded:
            self.state.metrics.delivery_attempted(claimed.target, result.outcome)
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        retry_at = self._retry_at(claimed, result)
        outcome, detail = result.outcome, result.detail
        if outcome == RETRY and retry_at is None:
            limit = self.state.settings.delivery_max_attempts
            outcome = FAILED
            detail = f"{detail} (attempt {claimed.attempt} of {limit}: dead-lettered)"
        self.state.metrics.delivery_attempted(claimed.target, outcome)
        try:
            await self.state.db.write(
                lambda tx: store.record(
                    tx.session,
                    claimed,
                    self.owner,
                    outcome=outcome,
                    detail=detail,
                    duration_ms=duration_ms,
                    retry_at=retry_at,
                    now=self.state.clock.now(),
                )
            )
        except Exception:
            log.exception("recording delivery %s failed; its lease will run out", claimed.id)
        if outcome != DELIVERED:
            log.info("delivery %s to %s: %s", claimed.id, claimed.target or claimed.channel, detail)

    def _retry_at(self, claimed: store.Claimed, result: Result) -> Any:
        settings = self.state.settings
        if result.outcome != RETRY or claimed.attempt >= settings.delivery_max_attempts:
            return None
        wait_s = delivery.backoff_s(
            claimed.attempt,
            base_s=settings.delivery_base_s,
            cap_s=settings.delivery_cap_s,
            jitter=random.random(),
        )
        return self.state.clock.now() + timedelta(seconds=wait_s)


EVENTS_KEY = "events"


def _nothing(event: dict[str, Any]) -> bool:
    return False
