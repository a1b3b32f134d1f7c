"""The event stream is decided again while it is open: a token revoked or expired, a
principal deleted, or a policy that no longer allows ListEvents closes it within a few
seconds, with an error that says why, and no event reaches it after that."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import pytest

from fleetrun.core.errors import AccessDeniedError, AuthenticationError, FleetrunError
from fleetrun.sdk import Client
from tests.harness import wait_for

READ_EVENTS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "fleetrun:ListEvents", "Resource": "*"}],
}
CLOSED_WITHIN_S = 8.0  # the server decides again every 2 s; generous for a loaded machine


@dataclass
class Reader:
    """A stream read on a thread: the events it got, and how it ended."""

    client: Client
    after: int
    events: list[int] = field(default_factory=list)
    error: FleetrunError | None = None
    ended_at: float | None = None
    thread: threading.Thread | None = None

    def start(self) -> Reader:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        try:
            for event in self.client.stream_events(after=self.after):
                self.events.append(event.seq)
        except FleetrunError as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()


def _principal(fleet, name: str, **token_args) -> tuple[str, Client]:
    admin = fleet.client
    admin.create_principal(name)
    admin.create_policy(f"{name}-events", READ_EVENTS)
    admin.attach(name, policy=f"{name}-events")
    created = admin.create_token(name, **token_args)
    return created.id, Client(fleet.server.url, created.token)


def _noise(fleet) -> None:
    """Make an event: an API call denied to a principal that may do nothing."""
    with contextlib.suppress(AccessDeniedError):
        fleet.noise.list_nodes()


def _open(fleet, client: Client) -> Reader:
    """A stream that has been seen to deliver an event (so it is open)."""
    _noise(fleet)
    start = fleet.client.list_events(limit=1)[0].seq
    reader = Reader(client, start).start()
    wait_for(lambda: _noise(fleet) or reader.events, timeout_s=20, interval_s=0.2, what="events")
    return reader


def _closes(fleet, reader: Reader) -> float:
    """Keep events coming until the stream ends; when it ended."""
    wait_for(
        lambda: _noise(fleet) or reader.ended_at,
        timeout_s=CLOSED_WITHIN_S,
        interval_s=0.2,
        what="the stream to close",
    )
    assert reader.ended_at is not None
    return reader.ended_at


@pytest.fixture
def secured(fleet):
    fleet.client.create_principal("noise")
    fleet.noise = Client(fleet.server.url, fleet.client.create_token("noise").token)
    yield fleet
    fleet.noise.close()


def test_revoking_the_token_and_deleting_its_principal_closes_an_open_stream(secured):
    fleet = secured
    token_id, client = _principal(fleet, "watcher")
    with client:
        reader = _open(fleet, client)
        fleet.client.revoke_token(token_id)
        fleet.client.delete_principal("watcher")
        revoked_at = time.monotonic()
        ended = _closes(fleet, reader)
    assert ended - revoked_at < CLOSED_WITHIN_S
    assert isinstance(reader.error, AuthenticationError)
    assert "no longer valid" in reader.error.message
    # Nothing it got after the close: the last event it saw is older than the revocation.
    newest = fleet.client.list_events(limit=1)[0].seq
    assert max(reader.events) < newest


def test_a_policy_that_stops_allowing_it_closes_the_stream_and_is_audited(secured):
    fleet = secured
    _, client = _principal(fleet, "watcher2")
    with client:
        reader = _open(fleet, client)
        fleet.client.detach("watcher2", policy="watcher2-events")
        _closes(fleet, reader)
    assert isinstance(reader.error, AccessDeniedError)
    assert "watcher2 may not perform fleetrun:ListEvents" in reader.error.message
    denials = [
        r
        for r in fleet.client.list_audit_records(principal="watcher2")
        if r.decision == "deny" and r.action == "fleetrun:ListEvents"
    ]
    assert denials


def test_a_token_that_expires_while_streaming_closes_the_stream(secured):
    fleet = secured
    _, client = _principal(fleet, "watcher3", expires_in_s=4)
    with client:
        reader = _open(fleet, client)
        _closes(fleet, reader)
    assert isinstance(reader.error, AuthenticationError)
