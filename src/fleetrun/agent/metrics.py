"""The agent's own metrics, served for Prometheus on a local address when asked
(`fleetrun-agent run --metrics-address 127.0.0.1:9471`, or FLEETRUN_AGENT_METRICS_ADDRESS;
off by default, see docs/monitoring.md).

The agent always keeps its few counts in `AgentStats` (plain integers, no library);
prometheus-client is imported only when the endpoint is asked for, and reads them at
scrape time. The endpoint has no authentication: bind it to loopback (or a network
only the scraper reaches).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fleetrun.core.errors import ValidationError

ADDRESS_ENV = "FLEETRUN_AGENT_METRICS_ADDRESS"


@dataclass
class AgentStats:
    invocations: Counter[str] = field(default_factory=Counter)  # by outcome
    frames_sent: int = 0  # to the server, re-sends and pings included
    bytes_sent: int = 0
    sessions: int = 0  # sessions opened with the server (1 + reconnections)

    def finished(self, outcome: str) -> None:
        self.invocations[outcome] += 1

    def sent(self, text: str) -> None:
        self.frames_sent += 1
        self.bytes_sent += len(text)


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or [V6]:PORT) to listen on; a ValidationError says what to write."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(
            f"--metrics-address {text!r} is not HOST:PORT: write e.g. 127.0.0.1:9471."
        )
    return host, int(port)


def serve(
    address: str, stats: AgentStats, *, connected: Callable[[], bool], running: Callable[[], int]
) -> Any:
    """Serve the metrics on `address` from a thread of their own; the server (its
    `shutdown()` stops it)."""
    host, port = parse_address(address)
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ValidationError(
            "--metrics-address needs the prometheus-client package: install it beside the "
            "agent (pip install prometheus-client), or run without --metrics-address."
        ) from None
    registry = CollectorRegistry()
    registry.register(_Collector(stats, connected, running))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ValidationError(
            f"Cannot serve metrics on {address}: {(exc.strerror or str(exc)).lower()}."
        ) from None
    return server


class _Collector:
    """Reads `AgentStats` (and the agent's live state) at each scrape."""

    def __init__(
        self, stats: AgentStats, connected: Callable[[], bool], running: Callable[[], int]
    ) -> None:
        self.stats = stats
        self.connected = connected
        self.running = running

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.stats
        yield GaugeMetricFamily(
            "fleetrun_agent_connected",
            "1 while a session with the server is open, else 0.",
            value=1 if self.connected() else 0,
        )
        yield GaugeMetricFamily(
            "fleetrun_agent_invocations_running", "Invocations running now.", value=self.running()
        )
        done = CounterMetricFamily(
            "fleetrun_agent_invocations",
            "Invocations finished on this node (refused ones included), by outcome.",
            labels=["outcome"],
        )
        for outcome, n in sorted(stats.invocations.items()):
            done.add_metric([outcome], n)
        yield done
        yield CounterMetricFamily(
            "fleetrun_agent_frames_sent", "Frames sent to the server.", value=stats.frames_sent
        )
        yield CounterMetricFamily(
            "fleetrun_agent_sent_bytes",
            "Bytes of frames sent to the server.",
            value=stats.bytes_sent,
        )
        yield CounterMetricFamily(
            "fleetrun_agent_sessions",
            "Sessions opened with the server (the first, then one per reconnection).",
            value=stats.sessions,
        )
