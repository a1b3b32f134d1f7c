"""Rules and their deliveries, in process with time set instead of waited for: signed
webhooks retried with backoff, dead letters and redrive, answers that are not worth
retrying, and old events forgotten while dead letters stay. The real app on a
`SettableClock`, nodes enrolled through the real route and spoken for over the real
gateway, and real webhook receivers on loopback. (A server killed mid-retry and
replicas sharing the work need real processes: tests/e2e/test_rules.py.)"""

from __future__ import annotations

import itertools
import json

import pytest

from tests.e2e.receivers import WebhookReceiver
from tests.harness import wait_for
from tests.inprocess import App, Node

SECRET = "a-webhook-secret-of-some-length"
SUCCESS = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["Success"]},
}
# Backoff of ten minutes, never more: each wait is one `advance(BACKOFF_S + 1)`.
BACKOFF_S = 600.0
SLOW = {"delivery_base_s": BACKOFF_S, "delivery_cap_s": BACKOFF_S}


@pytest.fixture
def slow_app(tmp_path):
    a = App(tmp_path, **SLOW).start()
    try:
        yield a
    finally:
        a.close()


def _hook_rule(client, name, url, pattern=SUCCESS):
    return client.create_rule(
        name, pattern=pattern, targets=[{"target": f"webhook:{url}", "secret": SECRET}]
    )


def _run(app: App, node: Node, exit_code: int = 0):
    command = app.client.send_command(script=f"exit {exit_code}", node_ids=[node.node_id])
    with app.connect(node) as session:
        session.answer(exit_code=exit_code, command_id=command.id)
        app.client.wait(command.id, timeout_s=30)
    return command


def _attempts(app, rule, count):
    """The rule's one delivery once it has been tried `count` times."""
    (delivery,) = wait_for(
        lambda: [d for d in app.client.list_rule_deliveries(rule) if d.attempts == count],
        timeout_s=30,
        what=f"attempt {count}",
    )
    return delivery


def test_a_failing_webhook_is_retried_with_backoff_until_it_takes_it(slow_app):
    app, client = slow_app, slow_app.client
    [node] = app.enrol(1)
    with WebhookReceiver(SECRET, fail_first=2) as hook:
        _hook_rule(client, "on-success", hook.url)
        command = _run(app, node)
        _attempts(app, "on-success", 1)
        app.advance(BACKOFF_S + 1)
        _attempts(app, "on-success", 2)
        app.advance(BACKOFF_S + 1)
        wait_for(lambda: hook.delivered(), timeout_s=30, what="the webhook to take the event")
        event = hook.delivered()[0].json
        assert event["detail"]["command-id"] == command.id
        assert event["detail-type"] == "Command Status-change Notification"
        assert all(r.verified for r in hook.requests)
        assert hook.answered == [503, 503, 200]
        ids = {r.headers["x-fleetrun-event-id"] for r in hook.requests}
        assert ids == {event["id"]}  # the same event each time: receivers can deduplicate
    (done,) = wait_for(
        lambda: [d for d in client.list_rule_deliveries("on-success") if d.state == "delivered"],
        timeout_s=30,
        what="the delivery recorded",
    )
    assert [a.outcome for a in done.history] == ["retry", "retry", "delivered"]
    assert done.history[0].detail == "HTTP 503" and done.attempts == 3
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(done.history)]
    assert all(g >= BACKOFF_S / 2 for g in gaps)  # waited (backoff, jittered), not hammered


def test_dead_letters_after_the_configured_attempts_then_redrive(tmp_path):
    app = App(tmp_path, delivery_max_attempts=2, **SLOW).start()
    try:
        client = app.client
        [node] = app.enrol(1)
        with WebhookReceiver(SECRET, failing=True) as hook:
            _hook_rule(client, "dead", hook.url)
            _run(app, node)
            _attempts(app, "dead", 1)
            app.advance(BACKOFF_S + 1)
            (dead,) = wait_for(
                lambda: client.list_rule_deliveries("dead", state="dead"),
                timeout_s=30,
                what="a dead letter",
            )
            assert dead.attempts == 2 and "dead-lettered" in dead.last_error
            assert len(hook.requests) == 2
            hook.failing = False
            done = app.cli("rules", "redrive", "dead", "--json")
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["redriven"] == 1
            wait_for(lambda: hook.delivered(), timeout_s=30, what="the redriven delivery")
            (after,) = wait_for(
                lambda: client.list_rule_deliveries("dead", state="delivered"),
                timeout_s=30,
                what="delivered",
            )
            assert after.history[-1].outcome == "delivered"
    finally:
        app.close()


def test_a_4xx_answer_is_not_retried_but_408_and_429_are(slow_app):
    app, client = slow_app, slow_app.client
    [node] = app.enrol(1)
    with (
        WebhookReceiver(SECRET, failing=True, fail_with=404) as gone,
        WebhookReceiver(SECRET, fail_first=1, fail_with=429) as busy,
    ):
        _hook_rule(client, "gone", gone.url)
        _hook_rule(client, "busy", busy.url)
        _run(app, node)
        (dead,) = wait_for(
            lambda: client.list_rule_deliveries("gone", state="dead"),
            timeout_s=30,
            what="the 404 dead letter",
        )
        _attempts(app, "busy", 1)
        assert busy.answered == [429]
        app.advance(BACKOFF_S + 1)
        wait_for(lambda: busy.delivered(), timeout_s=30, what="the 429 receiver, on the second try")
        assert dead.attempts == 1 and "404" in dead.last_error
        assert len(gone.requests) == 1


def test_old_events_and_deliveries_are_forgotten_but_dead_letters_stay(tmp_path):
    """Pruning runs at start (then every few minutes): a restart after the retention
    has passed forgets the delivered event and its delivery, not the dead letter's."""
    app = App(tmp_path, event_retention_s=3600.0, delivery_max_attempts=1).start()
    try:
        with WebhookReceiver(SECRET, fail_first=1) as hook:
            _hook_rule(app.client, "kept", hook.url, {"detail-type": ["Node Registration"]})
            app.enrol(2)
            wait_for(lambda: len(hook.requests) == 2, timeout_s=30, what="two attempts")
            # The receiver answered both; the outbox records each answer just after:
            # a restart before that would find the delivery pending and send it again.
            wait_for(
                lambda: (
                    sorted(d.state for d in app.client.list_rule_deliveries("kept"))
                    == ["dead", "delivered"]
                ),
                timeout_s=30,
                what="both answers recorded",
            )
        assert len(app.client.list_events(detail_type="Node Registration")) == 2
        app.advance(3600 + 1)
        app.restart()
        client = app.client
        wait_for(
            lambda: len(client.list_events(detail_type="Node Registration")) == 1,
            timeout_s=30,
            what="the delivered one forgotten",
        )
        (dead,) = client.list_rule_deliveries("kept")
        assert dead.state == "dead"
        assert client.list_events(detail_type="Node Registration")[0].id == dead.event_id
    finally:
        app.close()


def test_rules_match_with_eventbridge_operators(app):
    """The server routes with the full pattern matcher: prefix, numeric, anything-but.
    The last command matches too: once it is delivered, every earlier event has been
    routed, and the rule's recorded deliveries are exactly the matching ones."""
    client = app.client
    [node] = app.enrol(1)
    pattern = {
        "detail-type": [{"prefix": "Command Invocation"}],
        "detail": {
            "status": [{"anything-but": ["Pending", "InProgress", "Delayed"]}],
            "exit-code": [{"numeric": [">=", 2, "<", 5]}],
        },
    }
    with WebhookReceiver(SECRET) as hook:
        _hook_rule(client, "operators", hook.url, pattern)
        with app.connect(node) as session:
            for code in (0, 1, 3, 7, 4):
                command = client.send_command(script=f"exit {code}", node_ids=[node.node_id])
                session.answer(exit_code=code, command_id=command.id)
                app.client.wait(command.id, timeout_s=30)
        wait_for(
            lambda: any(r.json["detail"]["exit-code"] == 4 for r in hook.delivered()),
            timeout_s=30,
            what="the last matching event delivered",
        )
        wait_for(
            lambda: len(client.list_rule_deliveries("operators", state="delivered")) == 2,
            timeout_s=30,
            what="both deliveries recorded",
        )
        assert sorted(r.json["detail"]["exit-code"] for r in hook.delivered()) == [3, 4]
        assert len(client.list_rule_deliveries("operators")) == 2
