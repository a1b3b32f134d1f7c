"""Two server replicas sharing PostgreSQL, both running the alarm evaluator and the
forwarders, one agent on each: every line reaches the OTLP receiver once, and the alarm
fires once (one history entry, one webhook), whichever replica counts and evaluates.

Each replica keeps output in a data directory of its own (no shared bucket), so the
bytes of each agent's output are only on the replica it is connected to: a reader that
holds the cursor hands it over at a chunk it cannot read, never skips it."""

from __future__ import annotations

import os

import pytest

from tests.e2e.logsinks import OtlpReceiver
from tests.e2e.receivers import WebhookReceiver
from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, wait_for

SECRET = "a-webhook-secret-of-some-length"
KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
ALARMS = {"source": ["fleetrun"], "detail-type": ["Output Alarm State-change Notification"]}
SCRIPT = "for i in $(seq 1 200); do echo line $i; done; echo ERROR one; echo ERROR two"


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_replicas_forward_each_line_once_and_fire_an_alarm_once(tmp_path):
    otlp = OtlpReceiver().start()
    env = {**KEY, "FLEETRUN_FORWARD_OTLP": otlp.url, "FLEETRUN_RATE_LIMIT_PER_S": "0"}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    try:
        second.start()
        client = fleet.client
        agents = [*fleet.add_agents(1), _agent_of(second, fleet)]
        fleet.wait_online(agents)
        with WebhookReceiver(SECRET) as hook:
            client.create_rule(
                "alarms",
                pattern=ALARMS,
                targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
            )
            client.create_alarm("errors", pattern="ERROR", threshold=2, period="1m")
            command = client.send_command(script=SCRIPT, node_ids=[a.node_id for a in agents])
            client.wait(command.id, timeout_s=60)
            wait_for(lambda: len(otlp.records) >= 404, timeout_s=60, what="404 records")
            wait_for(lambda: client.get_alarm("errors").state == "ALARM", what="ALARM")
            fired = wait_for(
                lambda: [
                    r for r in hook.delivered() if r.json["detail"]["state"]["value"] == "ALARM"
                ],
                what="the ALARM webhook",
            )
            history = client.get_alarm_history("errors")
    finally:
        otlp.stop()
        second.stop()
        fleet.close()
    for agent in agents:
        bodies = [b for resource, _, b in otlp.records if resource["host.id"] == agent.node_id]
        assert bodies == [f"line {n}" for n in range(1, 201)] + ["ERROR one", "ERROR two"]
    assert len(fired) == 1
    assert [h.new_state for h in history].count("ALARM") == 1


def _agent_of(server, fleet):
    """An agent registered with and connected to `server` (the other replica), stopped
    with the fleet's."""
    activation = fleet.client.create_activation(registration_limit=1)
    agent = AgentProcess(server, fleet.root / "agent-b", "nodeb")
    fleet.agents.append(agent)
    agent.register(activation.id, activation.code)
    return agent.start()
