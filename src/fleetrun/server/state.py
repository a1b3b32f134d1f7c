"""Everything a running server holds, in one object the routes and loops share."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fleetrun.core.clock import Clock, SystemClock
from fleetrun.core.destinations import DestinationPolicy
from fleetrun.core.throttle import TokenBuckets
from fleetrun.server.alarms import AlarmEvaluator
from fleetrun.server.audit import AuditLog
from fleetrun.server.bus import Bus
from fleetrun.server.changes import Changes
from fleetrun.server.db import Database, Tx
from fleetrun.server.destinations import policy_for
from fleetrun.server.dispatcher import Dispatcher
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.forwarding import Forwarding
from fleetrun.server.gateway.gateway import Gateway
from fleetrun.server.identities import IdentityCache
from fleetrun.server.indexer import OutputIndexer
from fleetrun.server.metrics import Metrics
from fleetrun.server.outbox import Outbox
from fleetrun.server.output import OutputStore
from fleetrun.server.outputlog import HANDED_OVER, OutputLog
from fleetrun.server.registrations import Registrations
from fleetrun.server.retention import Retention
from fleetrun.server.secretbox import SecretBox
from fleetrun.server.settings import Settings
from fleetrun.server.sinks import OutputSinks
from fleetrun.server.store import runcommands as run_command_store


@dataclass
class ServerState:
    settings: Settings
    db: Database
    output: OutputStore
    clock: Clock = field(default_factory=SystemClock)  # what deadlines are measured by
    metrics: Metrics = field(default_factory=Metrics)  # GET /metrics
    changes: Changes = field(default_factory=Changes)
    audit: AuditLog = field(init=False)
    throttle: TokenBuckets = field(init=False)  # per principal
    unauthenticated: TokenBuckets = field(init=False)  # failures per source address
    identities: IdentityCache = field(init=False)  # who each token speaks for, remembered
    gateway: Gateway = field(init=False)
    registrations: Registrations = field(init=False)  # set by create_app
    dispatcher: Dispatcher = field(init=False)
    outbox: Outbox = field(init=False)
    secrets: SecretBox = field(init=False)
    sinks: OutputSinks = field(init=False)
    output_log: OutputLog = field(init=False)  # stored chunks, for alarms and forwarders
    alarms: AlarmEvaluator = field(init=False)
    forwarding: Forwarding = field(init=False)
    retention: Retention = field(init=False)
    indexer: OutputIndexer = field(init=False)  # output lines into the search index
    destinations: DestinationPolicy = field(init=False)  # where server-side requests may go
    bus: Bus = field(init=False)  # to and from the other replicas
    # This process among the replicas sharing the database: named on the node rows whose
    # sessions it holds, with one lease for all of them (store/replicas.py).
    replica_id: str = field(default_factory=lambda: str(uuid.uuid4()), init=False)
    # From the end of startup to the start of shutdown: what /readyz reports, so that a
    # balancer sends no new requests to a replica that is stopping.
    ready: bool = field(default=False, init=False)
    # Set when the process is asked to stop (SIGTERM, Ctrl-C): long-lived streams end.
    stopping: bool = field(default=False, init=False)
    _background: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    # Until when (time.monotonic()) this replica leads: set at each lease renewal that
    # finds it the leader, never beyond the lease it renewed (store/replicas.leader).
    _leads_until: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        self.destinations = policy_for(self.settings.allow_destination_cidrs, self.settings.host)
        self.secrets = SecretBox.load(self.settings.secret_key, self.settings.secret_key_path)
        self.outbox = Outbox(self)
        self.audit = AuditLog(
            self.db,
            failure_window_s=self.settings.audit_failure_window_s,
            monotonic=self.clock.monotonic,
        )
        self.throttle = TokenBuckets(self.settings.rate_limit_per_s, self.settings.rate_limit_burst)
        self.unauthenticated = TokenBuckets(
            self.settings.unauthenticated_rate_per_s, self.settings.unauthenticated_burst
        )
        self.identities = IdentityCache(self.clock.monotonic)
        self.identities.watch(self.db.sessionmaker)
        self.gateway = Gateway(self)
        self.dispatcher = Dispatcher(self)
        self.sinks = OutputSinks(self)
        self.alarms = AlarmEvaluator(self)
        self.forwarding = Forwarding(self)
        self.output_log = OutputLog(
            self.clock, replica_id=self.replica_id, always=bool(self.forwarding.forwarders)
        )
        self.retention = Retention(self, self.forwarding.cursors)
        self.indexer = OutputIndexer(self)
        self.bus = Bus(self.db, self.replica_id)
        self._listen()

    def _listen(self) -> None:
        """What another replica's messages make this one do (server/bus.py)."""
        bus = self.bus
        bus.on("dispatch", lambda _keys: self.dispatcher.wake())
        bus.on("changed", self._changed)
        bus.on("cancel", self._cancel)
        bus.on("deleted", self._deleted)
        bus.on("access", lambda _keys: self.identities.clear())
        bus.on("alarm-created", lambda _keys: self.output_log.alarm_created())
        bus.on(HANDED_OVER, self._handed_over)
        bus.on_connect(self._missed)

    def _changed(self, keys: list[str] | None) -> None:
        if keys is None:
            self.changes.publish_all()
        else:
            for key in keys:
                self.changes.publish(key)

    def _handed_over(self, _keys: list[str] | None) -> None:
        """Another replica gave a reader's cursor up at a chunk it cannot read: this
        one may hold the bytes."""
        self.alarms.wake()  # each only reads, unless its cursor is behind
        self.forwarding.wake()

    def _cancel(self, keys: list[str] | None) -> None:
        if keys is None:
            self.dispatcher.cancel_soon()
            return
        pairs = [(n, i) for n, _, i in (k.partition(" ") for k in keys)]
        if any(self.gateway.session_for(node_id) is not None for node_id, _ in pairs):
            self._spawn(self.gateway.cancel(pairs), "bus-cancel")

    def _deleted(self, keys: list[str] | None) -> None:
        # All of them (never in practice: a deletion is one node) is left to the next
        # lease renewal, which closes the sessions of deleted nodes held here.
        for node_id in keys or ():
            if self.gateway.session_for(node_id) is not None:
                self._spawn(self.gateway.node_deleted(node_id), "bus-deleted")

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._background.discard)

    def _missed(self) -> None:
        """Listening (re)started: whatever was said meanwhile is unknown, so act as if
        everything had been."""
        self.dispatcher.wake()
        self.dispatcher.cancel_soon()
        self.identities.clear()
        self.changes.publish_all()
        self.output_log.alarm_created()  # until the evaluator's next look says otherwise

    @property
    def leads(self) -> bool:
        """Whether this replica does the work done once for all replicas (output
        destinations). With SQLite there is one process: it does."""
        return self.db.is_sqlite or time.monotonic() < self._leads_until

    def lead(self, leads: bool, renewed_at: float) -> None:
        """The lease renewed when time.monotonic() was `renewed_at` found this replica
        the leader, or not: it leads for as long as that lease runs."""
        self._leads_until = renewed_at + self.settings.replica_lease_s if leads else float("-inf")

    def wake_dispatcher(self, tx: Tx) -> None:
        """Invocations may have been released in `tx`: once it commits, the dispatcher
        here and those of the other replicas deliver them."""
        tx.after_commit(self.dispatcher.wake)
        tx.publish("dispatch")

    def output_stored(self, streams: set[tuple[str, int, str]]) -> None:
        """Output of these (invocation, step, stream)s was stored and committed: wake
        what reads it, the search indexer always, the alarms and the forwarders when
        the output log noted it for them."""
        if not streams:
            return
        self.indexer.grew(streams)
        if self.output_log.alarms:
            self.alarms.wake()
        self.forwarding.wake()

    def refresh_commands(self, tx: Tx, command_ids: Iterable[str]) -> None:
        """Recompute these commands' status in `tx` (on the database thread), and once
        it is committed tell whoever waits on them and wake the dispatcher (those of
        the other replicas only when invocations were released: a change of counts
        gives them nothing to deliver)."""
        wake = released = False
        # In one order, so two replicas' transactions lock command rows without a cycle.
        command_ids = sorted(set(command_ids))
        for command_id in command_ids:
            refreshed = engine_commands.refresh_command(tx.session, command_id)
            if refreshed.changed:
                final = refreshed.finished is not None
                tx.after_commit(partial(self.changes.publish, command_id, final=final))
                tx.publish("changed", command_id)
            if refreshed.finished:
                tx.after_commit(partial(self.metrics.command_finished, *refreshed.finished))
            wake = wake or refreshed.changed or refreshed.released
            released = released or refreshed.released
        # Run commands follow their invocations; one that finishes may start another.
        if run_command_store.refresh_runs(tx.session, command_ids):
            wake = released = True
        if released:
            self.wake_dispatcher(tx)
        elif wake:
            tx.after_commit(self.dispatcher.wake)
