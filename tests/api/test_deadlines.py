"""Deadlines, expiry and backoff, with time set instead of waited for: the real app in
this process on a `SettableClock`, nodes enrolled through the real route, and (where the
server's side of a session is the point) the real gateway spoken to over the in-process
WebSocket. Each test advances the clock past a deadline and then waits for the state it
leads to, and checks the recorded transitions."""

from __future__ import annotations

import pytest

from fleetrun.core import protocol
from fleetrun.core.errors import AccessDeniedError, AuthenticationError, ValidationError
from fleetrun.server.engine.commands import LOST_GRACE_S
from tests.e2e.receivers import WebhookReceiver
from tests.harness import wait_for
from tests.inprocess import App

DELIVERY_S = 30  # the smallest delivery timeout allowed


def _invocation_when(app, command_id, node_id, status, what=None):
    return wait_for(
        lambda: (inv := app.client.get_invocation(command_id, node_id)).status == status and inv,
        timeout_s=30,
        what=what or f"the invocation to be {status}",
    )


def _transitions(inv):
    return [(t.status, t.detail) for t in inv.transitions]


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"delivery_timeout_s": 29}, "Delivery timeout 29s is out of range"),
        ({"delivery_timeout_s": 2592001}, "Delivery timeout 2592001s is out of range"),
        ({"timeout_s": 0}, "Execution timeout 0s is out of range"),
        ({"timeout_s": 172801}, "Execution timeout 172801s is out of range"),
    ],
)
def test_out_of_range_timeouts_are_refused_not_clamped(app, kwargs, phrase):
    app.enrol(1)
    with pytest.raises(ValidationError, match=phrase):
        app.client.send_command(script="true", all_nodes=True, **kwargs)
    assert app.client.list_commands() == []


def test_deadlines_are_shown_on_the_command(app):
    app.enrol(1)
    command = app.client.send_command(
        script="true", all_nodes=True, timeout_s=60, delivery_timeout_s=120
    )
    assert (command.execution_timeout_s, command.delivery_timeout_s) == (60, 120)
    assert (command.deliver_by - command.requested_at).total_seconds() == pytest.approx(120, abs=1)
    assert (command.expires_at - command.requested_at).total_seconds() == pytest.approx(180, abs=1)


def test_a_node_that_never_connects_is_delayed_then_times_out_on_delivery(app):
    """Offline: Delayed; the command stays InProgress until its delivery deadline; then
    the invocation is TimedOut (DeliveryTimedOut, never started) and so is the command,
    counted as a delivery time-out and not as an error."""
    [node] = app.enrol(1)
    command = app.client.send_command(
        script="echo late", node_ids=[node.node_id], delivery_timeout_s=DELIVERY_S
    )
    assert command.delivery_timeout_s == DELIVERY_S
    _invocation_when(app, command.id, node.node_id, "Delayed")
    app.advance(DELIVERY_S - 5)  # not yet
    # The dispatcher was woken and made its pass (it swept the deadline at the new time)
    # once a later command is Delayed too; the first is still waiting.
    probe = app.client.send_command(script="true", node_ids=[node.node_id])
    _invocation_when(app, probe.id, node.node_id, "Delayed")
    assert app.client.get_invocation(command.id, node.node_id).status == "Delayed"
    assert app.client.get_command(command.id).status == "InProgress"
    app.advance(6)  # past the deadline
    done = app.client.wait(command.id, timeout_s=30)
    inv = app.client.get_invocation(command.id, node.node_id)
    assert (inv.status, inv.status_detail, inv.started_at) == ("TimedOut", "DeliveryTimedOut", None)
    assert inv.message == "Not started before the command's delivery deadline."
    assert _transitions(inv) == [
        ("Pending", "Pending"),
        ("Delayed", "Delayed"),
        ("TimedOut", "DeliveryTimedOut"),
    ]
    assert (done.status, done.status_detail, done.delivery_timed_out_count, done.error_count) == (
        "TimedOut",
        "DeliveryTimedOut",
        1,
        0,
    )


def test_a_node_connecting_after_the_delivery_deadline_is_not_sent_the_command(app):
    """What timed out on delivery is never sent: the node's session gets the invoke of a
    later command, and none for the timed-out one."""
    [node] = app.enrol(1)
    late = app.client.send_command(
        script="echo late", node_ids=[node.node_id], delivery_timeout_s=DELIVERY_S
    )
    _invocation_when(app, late.id, node.node_id, "Delayed")
    app.advance(DELIVERY_S + 1)
    assert app.client.wait(late.id, timeout_s=30).status == "TimedOut"
    with app.connect(node) as session:
        fresh = app.client.send_command(script="echo fresh", node_ids=[node.node_id])
        invoke = session.next_invoke()
        assert invoke.command_id == fresh.id
    sent = [f.command_id for f in session.received if isinstance(f, protocol.Invoke)]
    assert late.id not in sent
    assert app.client.get_invocation(late.id, node.node_id).status == "TimedOut"


def test_a_connected_node_gets_the_command_before_its_deadline(app):
    """The other side of the deadline: delivered while on time, then not timed out by it."""
    [node] = app.enrol(1)
    with app.connect(node) as session:
        command = app.client.send_command(
            script="echo hi", node_ids=[node.node_id], delivery_timeout_s=DELIVERY_S
        )
        invoke = session.next_invoke()
        session.send(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True))
        inv = _invocation_when(app, command.id, node.node_id, "InProgress")
        app.advance(DELIVERY_S + 1)
        probe = app.client.send_command(script="true", node_ids=[node.node_id])
        assert session.next_invoke().command_id == probe.id  # a pass at the new time
        inv = app.client.get_invocation(command.id, node.node_id)
        assert (inv.status, inv.status_detail) == ("InProgress", "InProgress")


def test_a_running_invocation_whose_node_went_silent_times_out_after_the_command_expires(app):
    """In progress on a node that went away: TimedOut (ExecutionTimedOut) once the command
    has expired and a grace period has passed, not before."""
    [node] = app.enrol(1)
    with app.connect(node) as session:
        command = app.client.send_command(
            script="sleep 300", node_ids=[node.node_id], timeout_s=60, delivery_timeout_s=30
        )
        invoke = session.next_invoke()
        session.send(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True))
        _invocation_when(app, command.id, node.node_id, "InProgress")
    wait_for(
        lambda: app.client.get_node(node.node_id).ping_status == "ConnectionLost",
        timeout_s=30,
        what="the node to be lost",
    )
    app.advance(30 + 60 + LOST_GRACE_S - 5)  # past the expiry, within the grace
    probe = app.client.send_command(script="true", node_ids=[node.node_id])
    _invocation_when(app, probe.id, node.node_id, "Delayed")  # a pass was made
    assert app.client.get_invocation(command.id, node.node_id).status == "InProgress"
    app.advance(10)
    done = app.client.wait(command.id, timeout_s=30)
    inv = app.client.get_invocation(command.id, node.node_id)
    assert (done.status, inv.status, inv.status_detail) == (
        "TimedOut",
        "TimedOut",
        "ExecutionTimedOut",
    )
    assert "No result from the agent before the command expired" in (inv.message or "")
    assert _transitions(inv)[-2:] == [
        ("InProgress", "InProgress"),
        ("TimedOut", "ExecutionTimedOut"),
    ]


def test_an_activation_refuses_registration_once_it_has_expired(app):
    """Before its expiry an activation registers nodes; after it, it is refused with the
    time it expired, and listed as expired."""
    activation = app.client.create_activation(registration_limit=5, expires_in_s=3600)
    assert [a.expired for a in app.client.list_activations() if a.id == activation.id] == [False]
    app.advance(3600 + 1)
    [listed] = [a for a in app.client.list_activations() if a.id == activation.id]
    assert listed.expired
    with pytest.raises(AccessDeniedError, match="expired at"):
        app.client.request(
            "POST",
            "/v1/agent/register",
            json={
                "activation_id": activation.id,
                "activation_code": activation.code,
                "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "seal_public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "name": "too-late",
                "tags": {},
                "facts": {},
                "agent_version": "0.0.0-test",
            },
        )
    assert [n.name for n in app.client.list_nodes()] == []


def test_a_token_stops_working_when_it_expires(app):
    """A token with an expiry works until then, and is refused (and listed inactive) after."""
    token = app.client.create_token("admin", description="short-lived", expires_in_s=600)
    holder = app.client_for(token.token)
    assert holder.whoami().principal == "admin"
    app.advance(599)
    assert holder.whoami().principal == "admin"
    app.advance(2)
    with pytest.raises(AuthenticationError, match="expired"):
        holder.whoami()
    [listed] = [t for t in app.client.list_tokens("admin") if t.id == token.id]
    assert not listed.active


TIMED_OUT = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["TimedOut"]},
}


def test_a_failed_delivery_waits_out_its_backoff_before_the_next_attempt(tmp_path):
    """A webhook answering 503 is tried again only once its backoff has passed (ten
    minutes here, set by the clock), and then it takes the event."""
    app = App(tmp_path, delivery_base_s=600.0, delivery_cap_s=600.0).start()
    try:
        with WebhookReceiver("a-webhook-secret-of-some-length", fail_first=1) as hook:
            app.client.create_rule(
                "on-timeout",
                pattern=TIMED_OUT,
                targets=[
                    {"target": f"webhook:{hook.url}", "secret": "a-webhook-secret-of-some-length"}
                ],
            )
            [node] = app.enrol(1)
            command = app.client.send_command(
                script="true", node_ids=[node.node_id], delivery_timeout_s=DELIVERY_S
            )
            app.advance(DELIVERY_S + 1)
            app.client.wait(command.id, timeout_s=30)
            (first,) = wait_for(
                lambda: [
                    d
                    for d in app.client.list_rule_deliveries("on-timeout")
                    if d.attempts == 1 and d.state == "pending"
                ],
                timeout_s=30,
                what="the first attempt, refused",
            )
            assert hook.answered == [503]
            assert [a.outcome for a in first.history] == ["retry"]
            backoff = (first.next_attempt_at - first.history[0].at).total_seconds()
            assert 300 <= backoff <= 600  # half to all of the base, by the jitter
            app.advance(backoff + 1)
            (done,) = wait_for(
                lambda: [
                    d
                    for d in app.client.list_rule_deliveries("on-timeout")
                    if d.state == "delivered"
                ],
                timeout_s=30,
                what="the second attempt",
            )
            assert hook.answered == [503, 200]
            assert [a.outcome for a in done.history] == ["retry", "delivered"]
            assert done.history[1].at >= first.next_attempt_at  # not before its time
            assert hook.delivered()[0].json["detail"]["command-id"] == command.id
    finally:
        app.close()
