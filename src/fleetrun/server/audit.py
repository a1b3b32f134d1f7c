"""The audit log as the server writes it: every API request, every decision that
skipped a target, every agent session.

Requests put an `AuditEntry` in a queue (from the event loop or a database thread);
one writer appends whatever gathered in one transaction to the hash chain (group
commit), so auditing costs a request no extra round trip. Readers of the log flush
the queue first, so they see every request answered before theirs. At shutdown the
queue is written out; a crash can lose only the batch being gathered (at most
LINGER_S of records: a batch waits that long for company unless a reader asks).

Requests refused before anyone was authenticated (no token, a wrong one, throttled,
no such route) are summed up per source address: the first in a window is recorded
as it is, the others only counted, and one record per address and window says how
many there were (`detail.repeated`), so a flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetrun.core import access
from fleetrun.server import events
from fleetrun.server.authz import Denial
from fleetrun.server.secretbox import SecretBox
from fleetrun.server.store import audit as audit_store
from fleetrun.server.store import tokens as token_store

if TYPE_CHECKING:
    from fleetrun.server.db import Database, Tx

log = logging.getLogger(__name__)

MAX_BATCH = 1000
FLUSH_TIMEOUT_S = 10.0
LINGER_S = 0.05  # gather records this long before a write, unless a reader waits
TOKEN_USE_S = 60.0  # a token's last_used_at is written at most this often
UNAUTHENTICATED_STATUSES = frozenset({401, 404, 405, 429})  # summed up when nobody signed in


@dataclass
class AuditEntry:
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    kind: str = "request"  # request, decision, agent
    principal: str | None = None
    action: str | None = None
    resource: str | None = None
    decision: str | None = None  # allow, deny
    source_ip: str | None = None
    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


AUDIT_SIGNING = "fleetrun audit signing v1"


def signing_key(box: SecretBox) -> Ed25519PrivateKey:
    """The key that signs the head of every audit export, derived from the server's
    secret key (so every replica has the same one, and nothing more is kept)."""
    return Ed25519PrivateKey.from_private_bytes(box.derive(AUDIT_SIGNING))


@dataclass
class _Failures:
    """Unauthenticated failures from one address in the current window."""

    started: float  # monotonic
    first_at: datetime
    last_at: datetime
    repeated: int = 0  # after the first, which was recorded as it was
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self, source_ip: str, window_s: float) -> AuditEntry:
        return AuditEntry(
            at=self.last_at,
            kind="request",
            source_ip=source_ip,
            status=self.statuses.most_common(1)[0][0],
            detail={
                "repeated": self.repeated,
                "from": self.first_at.isoformat(),
                "to": self.last_at.isoformat(),
                "window_s": window_s,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            },
        )


class AuditLog:
    def __init__(
        self,
        db: Database,
        *,
        failure_window_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.failure_window_s = failure_window_s
        self._monotonic = monotonic  # the server's clock: windows end when it says so
        self._failures: dict[str, _Failures] = {}  # source address -> its current window
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: deque[AuditEntry] = deque()
        self._lock = threading.Lock()
        self._submitted = 0
        self._written = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None  # a reader waits: write now
        self._written_changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._token_written: dict[str, float] = {}  # token id -> when its use was last queued
        self._token_uses: dict[str, datetime] = {}  # token id -> last use, to write

    def token_used(self, token_id: str, now: float) -> None:
        """A request authenticated with this token: its last_used_at goes out with the
        next batch of records, at most once a minute per token (the request path
        stays write-free)."""
        last = self._token_written.get(token_id)
        if last is not None and now - last < TOKEN_USE_S:
            return
        self._token_written[token_id] = now
        with self._lock:
            self._token_uses[token_id] = datetime.now(UTC)

    # -- what gets recorded -------------------------------------------------------

    def submit(self, entry: AuditEntry) -> None:
        """Queue a record; safe from any thread."""
        with self._lock:
            self._pending.append(entry)
            self._submitted += 1
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def unauthenticated(self, entry: AuditEntry, now: float | None = None) -> None:
        """A request refused with nobody authenticated: recorded if it is the first
        from its address in the window, else only counted for the window's summary."""
        now = self._monotonic() if now is None else now
        source = entry.source_ip or "-"
        with self._lock:
            window = self._failures.get(source)
            ended = window if window and now - window.started >= self.failure_window_s else None
            if window is None or ended is not None:
                self._failures[source] = _Failures(now, entry.at, entry.at)
            else:
                window.repeated += 1
                window.last_at = entry.at
                assert entry.status is not None
                window.statuses[entry.status] += 1
        if ended is not None and ended.repeated:
            self.submit(ended.summary(source, self.failure_window_s))
        if window is None or ended is not None:
            self.submit(entry)

    def close_windows(self, now: float | None = None, *, every: bool = False) -> None:
        """Write the summary of each window that has ended (of every one: at shutdown)."""
        now = self._monotonic() if now is None else now
        with self._lock:
            ended = {
                source: window
                for source, window in self._failures.items()
                if every or now - window.started >= self.failure_window_s
            }
            for source in ended:
                del self._failures[source]
        for source, window in ended.items():
            if window.repeated:
                self.submit(window.summary(source, self.failure_window_s))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(self.failure_window_s, 5.0))
            self.close_windows()

    def denied(self, entry: AuditEntry | None, denial: Denial) -> None:
        """A denial: the request's own record says so when the request failed with it;
        a target skipped (a node of a command) gets a record of its own."""
        detail: dict[str, Any] = {"reason": denial.reason}
        if denial.matched_statements:
            detail["matched_statements"] = denial.matched_statements
        if denial.fails_request and entry is not None:
            entry.decision = "deny"
            entry.resource = denial.resource
            entry.detail.update(detail)
            return
        self.submit(
            AuditEntry(
                kind="decision",
                principal=denial.principal,
                action=denial.action,
                resource=denial.resource,
                decision="deny",
                source_ip=denial.source_ip,
                request_id=denial.request_id,
                detail=detail,
            )
        )

    def agent(
        self,
        action: str,
        node_id: str | None,
        *,
        source_ip: str | None,
        decision: str = "allow",
        **detail: Any,
    ) -> None:
        self.submit(
            AuditEntry(
                kind="agent",
                action=action,
                resource=access.frn("node", node_id) if node_id else None,
                decision=decision,
                source_ip=source_ip,
                detail={k: v for k, v in detail.items() if v is not None},
            )
        )

    # -- the writer ------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._written_changed = asyncio.Condition()
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        self._sweeper = asyncio.create_task(self._sweep(), name="audit-failure-windows")
        self._wake.set()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        self.close_windows(every=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), FLUSH_TIMEOUT_S)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pending:
            log.error("%d audit record(s) could not be written at shutdown", len(self._pending))

    async def flush(self) -> None:
        """Wait until every record queued so far is in the database."""
        target = self._submitted
        if self._written >= target or self._written_changed is None:
            return
        assert self._wake is not None
        assert self._urgent is not None
        self._urgent.set()
        self._wake.set()
        async with self._written_changed:
            await self._written_changed.wait_for(lambda: self._written >= target)

    async def _run(self) -> None:
        assert self._wake is not None
        assert self._urgent is not None
        while True:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):  # a request or two rarely come alone
                async with asyncio.timeout(LINGER_S):  # not wait_for: see changes.py
                    await self._urgent.wait()
            self._wake.clear()
            self._urgent.clear()
            while self._pending or self._token_uses:
                with self._lock:
                    batch = [
                        self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))
                    ]
                    uses, self._token_uses = self._token_uses, {}
                try:
                    await self.db.write(partial(_append, batch, uses))
                except Exception:
                    log.exception("writing %d audit record(s) failed; retrying", len(batch))
                    with self._lock:
                        self._pending.extendleft(reversed(batch))
                        self._token_uses = uses | self._token_uses
                    await asyncio.sleep(1.0)
                    continue
                self._written += len(batch)
                assert self._written_changed is not None
                async with self._written_changed:
                    self._written_changed.notify_all()


def _append(batch: list[AuditEntry], uses: dict[str, datetime], tx: Tx) -> None:
    """Append the records (each denial is an event as well, in the same transaction)
    and note when tokens were last used."""
    if batch:
        audit_store.append_records(tx.session, [asdict(e) for e in batch])
    for entry in batch:
        if entry.decision == "deny" and entry.kind in ("request", "decision"):
            events.emit(
                tx.session,
                events.API_CALL_DENIED,
                [entry.resource] if entry.resource and entry.resource != "*" else [],
                {
                    "principal": entry.principal,
                    "action": entry.action,
                    "resource": entry.resource,
                    "reason": entry.detail.get("reason"),
                    "source-ip": entry.source_ip,
                    "request-id": entry.request_id,
                    "path": entry.path,
                    "kind": "request" if entry.kind == "request" else "target",
                },
                at=entry.at,
            )
    for token_id, at in uses.items():
        token_store.touch_token(tx.session, token_id, at)


SSM_PATH = "/"  # the SSM-compatible API: POST / (server/ssm/protocol.py)


def _audited(scope: Scope) -> bool:
    """The native API under /v1/, the SSM-compatible API's POST /, and of the console's
    requests (/ui/) those that change something (its page views are reads, and a page
    refused is recorded by its denial)."""
    path: str = scope["path"]
    method: str = scope["method"]
    if path.startswith("/v1/"):
        return True
    if path == SSM_PATH:
        return method == "POST"
    return path.startswith("/ui/") and method not in ("GET", "HEAD", "OPTIONS")


class AuditMiddleware:
    """Give every /v1 HTTP request, and every web console request that changes
    something, an audit entry (routes and the authorizer fill in principal, action,
    resource and decision) and queue it with the status answered."""

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _audited(scope):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        client = scope.get("client")
        entry = AuditEntry(
            source_ip=client[0] if client else None,
            request_id=state.get("request_id"),
            method=scope["method"],
            path=scope["path"],
        )
        state["audit"] = entry
        done = False

        async def send_audited(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start" and not done:
                entry.status = int(message["status"])
                self._record(entry)
                done = True
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        finally:
            if not done:
                entry.status = entry.status or 500
                self.audit.submit(entry)

    def _record(self, entry: AuditEntry) -> None:
        anonymous = entry.principal is None and not (entry.path or "").startswith("/v1/agent/")
        # The SSM-compatible API answers a bad signature 400, as AWS does.
        refused = entry.status in UNAUTHENTICATED_STATUSES or entry.path == SSM_PATH
        if anonymous and refused:
            self.audit.unauthenticated(entry)
        else:
            self.audit.submit(entry)
