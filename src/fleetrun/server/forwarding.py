"""Forwarding output lines, as they arrive, to log systems configured on the server.

Each forwarder reads the output log (fleetrun.server.outputlog) from its own cursor,
`forward:<name>`: it leases the cursor, reads a batch of chunks (the buffer in memory
is that one batch), sends the lines they complete, and moves the cursor only once the
log system has taken them. Forwarding never touches the path that stores output: a
slow or dead log system makes the forwarder lag, never a command wait. A failure is
retried with capped backoff and reported (`fleetrun outputs forwarders`); the cursor
stays where it was, so nothing the server stored is skipped. Delivery is at least
once: a batch the receiver took but did not confirm is sent again.

- syslog (`tcp://` or `tls://HOST:PORT`): RFC 5424 messages, octet-counted (RFC 6587),
  one connection per batch. TCP syslog has no acknowledgement, so a batch counts as
  delivered when the receiver, having read our end of the stream, closes its side.
- otlp (`http(s)://HOST:4318/v1/logs`): an OTLP/HTTP ExportLogsServiceRequest in its
  JSON encoding, one resource per node; any 2xx answer is delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleetrun.schemas.alarms import Forwarder as ForwarderView
from fleetrun.server import outputlog
from fleetrun.server.db import Tx
from fleetrun.server.store.tables import OutputChunk, OutputCursor

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

LEASE_S = 60.0
TIMEOUT_S = 10.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
ENTERPRISE = "32473"  # the example private enterprise number of RFC 5612
FACILITY_USER = 1
SEVERITY = {"stdout": 6, "stderr": 4}  # informational, warning


class ForwardError(Exception):
    """The log system did not take a batch: the message says why."""


class Sender(Protocol):
    async def send(self, lines: Sequence[outputlog.Line]) -> None: ...

    async def close(self) -> None: ...


# -- syslog ----------------------------------------------------------------------------


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _ascii_field(value: str | None, fallback: str, limit: int) -> str:
    text = "".join(c for c in (value or "") if 33 <= ord(c) <= 126)[:limit]
    return text or fallback


def syslog_message(line: outputlog.Line) -> bytes:
    """One RFC 5424 message, framed by its octet count (RFC 6587)."""
    pri = FACILITY_USER * 8 + SEVERITY.get(line.stream, 6)
    stamp = line.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    host = _ascii_field(line.node_name, line.node_id, 255)
    params = {
        "node-id": line.node_id,
        "node-name": line.node_name or "",
        "command-id": line.command_id,
        "document": line.document_name,
        "invocation-id": line.invocation_id,
        "step": str(line.step),
        "stream": line.stream,
        "tags": ",".join(f"{k}={v}" for k, v in sorted(line.tags.items())),
    }
    sd = "[fleetrun@" + ENTERPRISE
    sd += "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    message = f"<{pri}>1 {stamp} {host} fleetrun - {line.stream} {sd} {line.text}"
    data = message.encode("utf-8", errors="replace")
    return str(len(data)).encode() + b" " + data


class SyslogSender:
    def __init__(self, url: str, ca_file: str | None) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "tls"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (6514 if self.tls else 514)
        self.context: ssl.SSLContext | None = None
        if self.tls:
            self.context = ssl.create_default_context(cafile=ca_file)

    async def send(self, lines: Sequence[outputlog.Line]) -> None:
        data = b"".join(syslog_message(line) for line in lines)
        try:
            await asyncio.to_thread(self._send, data)
        except (OSError, ssl.SSLError) as exc:
            raise ForwardError(f"syslog {self.host}:{self.port}: {exc}") from exc

    def _send(self, data: bytes) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=TIMEOUT_S)
        sock: socket.socket = raw
        try:
            if self.context is not None:
                sock = self.context.wrap_socket(raw, server_hostname=self.host)
            sock.sendall(data)
            # Our end of the stream, then wait for the receiver's: it closes only after
            # reading everything before our end.
            raw.shutdown(socket.SHUT_WR)
            with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError):
                while sock.recv(4096):
                    pass
        finally:
            sock.close()

    async def close(self) -> None:
        return None


# -- OpenTelemetry ---------------------------------------------------------------------


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def otlp_request(lines: Sequence[outputlog.Line]) -> dict[str, Any]:
    """An ExportLogsServiceRequest (OTLP's JSON encoding): one resource per node."""
    by_node: dict[str, list[outputlog.Line]] = {}
    for line in lines:
        by_node.setdefault(line.node_id, []).append(line)
    resources = []
    for node_id, node_lines in by_node.items():
        first = node_lines[0]
        resource = [
            _attr("service.name", "fleetrun"),
            _attr("host.id", node_id),
            _attr("host.name", first.node_name or node_id),
            *[_attr(f"fleetrun.tag.{k}", v) for k, v in sorted(first.tags.items())],
        ]
        records = [
            {
                "timeUnixNano": str(int(line.at.timestamp() * 1e9)),
                "observedTimeUnixNano": str(int(line.at.timestamp() * 1e9)),
                "severityNumber": 9 if line.stream == "stdout" else 13,
                "severityText": "INFO" if line.stream == "stdout" else "WARN",
                "body": {"stringValue": line.text},
                "attributes": [
                    _attr("fleetrun.command_id", line.command_id),
                    _attr("fleetrun.document", line.document_name),
                    _attr("fleetrun.invocation_id", line.invocation_id),
                    _attr("fleetrun.step", line.step),
                    _attr("log.iostream", line.stream),
                ],
            }
            for line in node_lines
        ]
        resources.append(
            {
                "resource": {"attributes": resource},
                "scopeLogs": [{"scope": {"name": "fleetrun"}, "logRecords": records}],
            }
        )
    return {"resourceLogs": resources}


class OtlpSender:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)

    async def send(self, lines: Sequence[outputlog.Line]) -> None:
        body = json.dumps(otlp_request(lines)).encode()
        try:
            answer = await self.http.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise ForwardError(f"OTLP {self.url}: {exc!r}") from exc
        if not answer.is_success:
            raise ForwardError(f"OTLP {self.url} answered {answer.status_code}")

    async def close(self) -> None:
        await self.http.aclose()


# -- the loops -------------------------------------------------------------------------


@dataclass
class Forwarder:
    name: str  # syslog or otlp
    destination: str
    sender: Sender

    @property
    def cursor(self) -> str:
        return f"forward:{self.name}"


def configured(state: ServerState) -> list[Forwarder]:
    settings = state.settings
    out = []
    if settings.forward_syslog:
        sender = SyslogSender(settings.forward_syslog, settings.forward_syslog_ca_file)
        out.append(Forwarder("syslog", settings.forward_syslog, sender))
    if settings.forward_otlp:
        out.append(Forwarder("otlp", settings.forward_otlp, OtlpSender(settings.forward_otlp)))
    return out


class Forwarding:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.owner = f"srv-{secrets.token_hex(6)}"
        self.forwarders = configured(state)
        self._wakes = {f.name: asyncio.Event() for f in self.forwarders}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def cursors(self) -> list[str]:
        return [f.cursor for f in self.forwarders]

    async def start(self) -> None:
        if not self.forwarders:
            return
        now = self.state.clock.now()

        def ensure(tx: Tx) -> None:
            for forwarder in self.forwarders:
                outputlog.ensure_cursor(tx.session, forwarder.cursor, now)

        await self.state.db.write(ensure)
        self._tasks = [
            asyncio.create_task(self._run(f), name=f"forward-{f.name}") for f in self.forwarders
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for forwarder in self.forwarders:
            await forwarder.sender.close()

    def wake(self) -> None:
        """Forward now (output was stored: `ServerState.output_stored`)."""
        for wake in self._wakes.values():
            wake.set()

    async def _run(self, forwarder: Forwarder) -> None:
        wake = self._wakes[forwarder.name]
        failures = 0
        while True:
            wait_s = (
                min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures)
                if failures
                else self.state.settings.sweep_interval_s
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await wake.wait()
            wake.clear()
            try:
                while await self.forward_once(forwarder):
                    pass
                failures = 0
            except Exception as exc:
                failures = min(failures + 1, 10)
                error = str(exc) if isinstance(exc, ForwardError) else repr(exc)
                log.warning("forwarding output to %s failed: %s", forwarder.name, error)
                now = self.state.clock.now()
                with contextlib.suppress(Exception):
                    await self.state.db.write(
                        partial(_report, cursor=forwarder.cursor, error=error, now=now)
                    )

    async def forward_once(self, forwarder: Forwarder) -> bool:
        """Send one batch; whether a full one went (there may be more)."""

        def claim(tx: Tx) -> outputlog.Batch | None:
            now = self.state.clock.now()
            return outputlog.claim_batch(
                tx.session, forwarder.cursor, self.owner, now, LEASE_S, self.state.replica_id
            )

        if not await self.state.db.read(partial(outputlog.behind, name=forwarder.cursor)):
            return False  # nothing new: no write (SQLite has one writer)
        batch = await self.state.db.write(claim)
        if batch is None or not batch.chunks:
            return False
        read = await outputlog.lines_of(
            self.state.output, batch.chunks, batch.labels, batch.elsewhere
        )
        if read.lines:
            await forwarder.sender.send(read.lines)
        now = self.state.clock.now()

        def moved(tx: Tx) -> None:
            session, cursor = tx.session, forwarder.cursor
            outputlog.settle(session, cursor, self.owner, batch.chunks, read, len(read.lines), now)
            if read.unreadable:
                outputlog.report_error(
                    session, cursor, outputlog.unreadable_message(read.unreadable), now
                )

        await self.state.db.write(moved)
        if read.unreadable:
            log.warning(
                "forwarding to %s: %s",
                forwarder.name,
                outputlog.unreadable_message(read.unreadable),
            )
        return not read.handed_over(batch.chunks) and len(batch.chunks) >= outputlog.BATCH


def views(session: Session, forwarders: Sequence[Forwarder]) -> list[ForwarderView]:
    out = []
    for forwarder in forwarders:
        cursor = session.get(OutputCursor, forwarder.cursor)
        position = cursor.seq if cursor else 0
        lag = session.execute(
            select(func.count()).select_from(OutputChunk).where(OutputChunk.seq > position)
        ).scalar()
        out.append(
            ForwarderView(
                name=forwarder.name,
                kind=forwarder.name,
                destination=forwarder.destination,
                position=position,
                lag_chunks=int(lag or 0),
                sent_lines=cursor.sent_lines if cursor else 0,
                last_ok_at=cursor.last_ok_at if cursor else None,
                last_error=cursor.last_error if cursor else None,
                last_error_at=cursor.last_error_at if cursor else None,
            )
        )
    return out


def _report(tx: Tx, *, cursor: str, error: str, now: datetime) -> None:
    outputlog.report_error(tx.session, cursor, error, now)
