"""Rules and their deliveries where real processes are the point: nothing lost across a
server killed mid-delivery, and replicas sharing the work without doing it twice.
(Bad rules and patterns, the rules commands and secrets never shown nor stored in
clear are in tests/api/test_rules.py; retries with backoff, dead letters and redrive,
retention and the pattern operators, with time set instead of waited for, in
tests/api/test_rule_deliveries.py.)"""

from __future__ import annotations

import os

import pytest

from tests.e2e.receivers import WebhookReceiver
from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, wait_for

SECRET = "a-webhook-secret-of-some-length"
SUCCESS = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["Success"]},
}
FAST = {"FLEETRUN_DELIVERY_BASE_S": "0.2", "FLEETRUN_DELIVERY_CAP_S": "1"}


def _hook_rule(client, name, url, pattern=SUCCESS):
    return client.create_rule(
        name, pattern=pattern, targets=[{"target": f"webhook:{url}", "secret": SECRET}]
    )


def _run(fleet, agent, script="true"):
    command = fleet.client.send_command(script=script, node_ids=[agent.node_id])
    fleet.client.wait(command.id, timeout_s=60)
    return command


def test_a_delivery_survives_the_server_being_killed_mid_retry(tmp_path):
    fleet = Fleet(
        tmp_path,
        env={**FAST, "FLEETRUN_DELIVERY_CAP_S": "2", "FLEETRUN_DELIVERY_LEASE_S": "3"},
    ).start()
    try:
        agent = fleet.add_agent()
        client = fleet.client
        with WebhookReceiver(SECRET, failing=True) as hook:
            _hook_rule(client, "survives", hook.url)
            command = _run(fleet, agent)
            wait_for(lambda: len(hook.requests) >= 2, what="a few failed attempts")
            fleet.server.kill()  # SIGKILL: no goodbye, leases and all left as they were
            hook.failing = False
            seen = len(hook.requests)
            assert not hook.delivered()
            fleet.server.start()
            wait_for(lambda: hook.delivered(), timeout_s=60, what="delivery after the restart")
            assert hook.delivered()[0].json["detail"]["command-id"] == command.id
            assert len(hook.requests) > seen
            # the receiver has answered; the server records that just after
            (done,) = wait_for(
                lambda: client.list_rule_deliveries("survives", state="delivered"),
                what="the delivery recorded as delivered",
            )
            assert len(client.list_rule_deliveries("survives")) == 1
            assert [a.outcome for a in done.history][-1] == "delivered"
    finally:
        fleet.close()


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_replicas_sharing_postgresql_deliver_each_event_once(tmp_path):
    key = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
    first = ServerProcess(tmp_path / "a", env={**FAST, **key}).start()
    second = ServerProcess(tmp_path / "b", env={**FAST, **key}, db=first.db)
    try:
        second.start()
        with first.client() as client, WebhookReceiver(SECRET) as hook:
            pattern = {"source": ["fleetrun"], "detail-type": ["Node Registration"]}
            _hook_rule(client, "every-node", hook.url, pattern)
            for index in range(20):
                # Registrations alternate between the replicas: both route and deliver.
                server = first if index % 2 else second
                activation = client.create_activation(registration_limit=1)
                agent = AgentProcess(server, tmp_path / f"agent{index}", f"r{index}")
                agent.register(activation.id, activation.code)
            wait_for(lambda: len(hook.delivered()) >= 20, what="20 deliveries")
            # The final state: every delivery recorded as delivered, each in one attempt
            # (a second replica sending it again would have claimed it again).
            done = wait_for(
                lambda: (
                    [
                        d
                        for d in client.list_rule_deliveries("every-node", state="delivered")
                        if d.history
                    ]
                    if len(client.list_rule_deliveries("every-node", state="delivered")) == 20
                    else None
                ),
                what="20 deliveries recorded",
            )
            assert all(d.attempts == 1 for d in done), [d.attempts for d in done]
            ids = [r.json["id"] for r in hook.requests]
            assert len(ids) == 20 and len(set(ids)) == 20
    finally:
        second.stop()
        first.close()
