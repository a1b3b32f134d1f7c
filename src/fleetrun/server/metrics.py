"""The server's Prometheus metrics, served at `GET /metrics` (docs/monitoring.md).

`Metrics` owns every metric object, in a registry of its own (not prometheus-client's
global one), so several apps in one process (the in-process tests) keep apart. The
code that does the work calls one method here per site; counts that the database
already keeps (commands and invocations by status, the outbox's lag) are read at
scrape time instead of being tracked twice.

Who may scrape: a request from an address in `metrics_allow_cidrs`, one bearing the
`metrics_token`, or one with an API token of an administrator (`scrape_refusal`).
"""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetrun.core.destinations import Network, parse_address, parse_networks
from fleetrun.core.statuses import CommandStatus, InvocationStatus

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

CONTENT_TYPE = CONTENT_TYPE_LATEST
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TARGET_KINDS = frozenset({"webhook", "email", "nats", "redis", "redis-stream", "command"})
# Send-to-done: from a second (a quick script) to an hour (a slow rollout).
COMMAND_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
DB_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Every metric of one server process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "fleetrun_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "fleetrun_http_request_duration_seconds",
            "Time to answer an HTTP request (to its first response byte), by route template.",
            ["route"],
            registry=r,
        )
        self.commands = Gauge(
            "fleetrun_commands", "Commands by status (read at scrape time).", ["status"], registry=r
        )
        self.invocations = Gauge(
            "fleetrun_invocations",
            "Invocations (one command on one node) by status (read at scrape time).",
            ["status"],
            registry=r,
        )
        self.command_seconds = Histogram(
            "fleetrun_command_duration_seconds",
            "From a command's send to its terminal status, by that status.",
            ["status"],
            buckets=COMMAND_BUCKETS_S,
            registry=r,
        )
        self.agents_connected = Gauge(
            "fleetrun_agents_connected",
            "Agent sessions open on this server process (replica).",
            ["replica"],
            registry=r,
        )
        self.frames_applied = Counter(
            "fleetrun_frames_applied",
            "Agent frames (ack, output, state) stored, by type.",
            ["type"],
            registry=r,
        )
        self.output_bytes = Counter(
            "fleetrun_output_bytes", "Bytes of command output stored.", registry=r
        )
        self.outbox_lag = Gauge(
            "fleetrun_outbox_lag_seconds",
            "Age of the oldest event not yet routed or delivery due and not yet sent "
            "(0: none waits; read at scrape time).",
            registry=r,
        )
        self.deliveries = Counter(
            "fleetrun_deliveries",
            "Event delivery attempts, by target kind and outcome (delivered, retry, failed).",
            ["kind", "outcome"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "fleetrun_delivery_failures",
            "Event delivery attempts that failed (to be retried or dead-lettered), by target kind.",
            ["kind"],
            registry=r,
        )
        self.db_seconds = Histogram(
            "fleetrun_db_transaction_seconds",
            "Database transactions, start to commit (retries included), by kind (read, write).",
            ["kind"],
            buckets=DB_BUCKETS_S,
            registry=r,
        )
        self.db_retries = Counter(
            "fleetrun_db_retries",
            "Write transactions run again after the database aborted them, by reason.",
            ["reason"],
            registry=r,
        )

    # -- one call per site ------------------------------------------------------------

    def command_finished(self, status: str, seconds: float) -> None:
        self.command_seconds.labels(status).observe(max(0.0, seconds))

    def frames_stored(self, frames: Iterable[object], output_bytes: int) -> None:
        for frame in frames:
            self.frames_applied.labels(getattr(frame, "type", "other")).inc()
        if output_bytes:
            self.output_bytes.inc(output_bytes)

    def delivery_attempted(self, target: str, outcome: str) -> None:
        kind = target.partition(":")[0] if target else "channel"
        kind = kind if kind in TARGET_KINDS else "other"
        self.deliveries.labels(kind, outcome).inc()
        if outcome != "delivered":
            self.delivery_failures.labels(kind).inc()

    def transaction(self, kind: str, started: float) -> None:
        self.db_seconds.labels(kind).observe(time.perf_counter() - started)

    def retried(self, reason: str) -> None:
        self.db_retries.labels(reason).inc()

    # -- scraping ---------------------------------------------------------------------

    async def scrape(self, state: ServerState) -> bytes:
        """The text exposition, with the database's counts read now."""
        census = await state.db.read(lambda s: _census(s, state.clock.now()))
        for enum, gauge, counts in (
            (CommandStatus, self.commands, census.commands),
            (InvocationStatus, self.invocations, census.invocations),
        ):
            for status in {*(m.value for m in enum), *counts}:
                gauge.labels(status).set(counts.get(status, 0))
        self.outbox_lag.set(census.outbox_lag_s)
        self.agents_connected.clear()
        self.agents_connected.labels(state.outbox.owner).set(len(state.gateway.sessions))
        return generate_latest(self.registry)


class _Census:
    def __init__(
        self, commands: dict[str, int], invocations: dict[str, int], outbox_lag_s: float
    ) -> None:
        self.commands = commands
        self.invocations = invocations
        self.outbox_lag_s = outbox_lag_s


def _census(session: Session, now: datetime) -> _Census:
    # imported here: the stores import the database module, which imports this one
    from fleetrun.server.store.deliveries import PENDING
    from fleetrun.server.store.tables import Command, Delivery, Event, Invocation

    def by_status(column: InstrumentedAttribute[str]) -> dict[str, int]:
        rows = session.execute(select(column, func.count()).group_by(column)).all()
        return {str(status): int(n) for status, n in rows}

    oldest_event = session.execute(
        select(Event.time).where(Event.routed.is_(False)).order_by(Event.seq).limit(1)
    ).scalar()
    oldest_due = session.execute(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.state == PENDING, Delivery.next_attempt_at <= now
        )
    ).scalar()
    waiting = [t for t in (oldest_event, oldest_due) if t is not None]
    lag_s = max(((now - _aware(t)).total_seconds() for t in waiting), default=0.0)
    return _Census(by_status(Command.status), by_status(Invocation.status), max(0.0, lag_s))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=8)  # the setting is read on every scrape, parsed once
def scrape_networks(allow_cidrs: str) -> tuple[Network, ...]:
    """The comma-separated networks allowed to scrape (a ValidationError names a bad one)."""
    return parse_networks(allow_cidrs.split(","), setting="metrics_allow_cidrs")


def scrape_allowed_by_address(allow_cidrs: str, address: str | None) -> bool:
    """Whether `address` is in one of the networks allowed to scrape."""
    networks = scrape_networks(allow_cidrs)
    ip = parse_address(address) if networks and address else None
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def scrape_token_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(
        str(expected).encode(), str(given).encode()
    )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route's path template (not the raw
    path: /v1/commands/{command_id} is one series, whatever the ids), method and status.
    Plain ASGI, like RequestIdMiddleware."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers otherwise

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = route_template(scope)
                self.metrics.http_seconds.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            route = route_template(scope)
            self.metrics.http_requests.labels(route, method, str(status)).inc()


def route_template(scope: Scope) -> str:
    """The path template of the route that served this request ("unmatched": none)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
