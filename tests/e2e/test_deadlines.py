"""Deadlines: delivery time-outs, execution time-outs per invocation and per step."""

from __future__ import annotations

import time

import pytest

from fleetrun.core.errors import ValidationError
from tests.harness import wait_for


def test_a_node_that_does_not_start_in_time_times_out_on_delivery(fleet):
    [agent] = fleet.add_agents(1, start=False)
    command = fleet.client.send_command(
        script="echo late", node_ids=[agent.node_id], delivery_timeout_s=30
    )
    assert command.delivery_timeout_s == 30
    done = fleet.client.wait(command.id, timeout_s=90)
    inv = fleet.client.get_invocation(command.id, agent.node_id)
    assert (inv.status, inv.status_detail, inv.started_at) == ("TimedOut", "DeliveryTimedOut", None)
    assert (done.status, done.status_detail, done.delivery_timed_out_count, done.error_count) == (
        "TimedOut",
        "DeliveryTimedOut",
        1,
        0,
    )
    # the agent connecting now does not run it
    agent.start()
    fleet.wait_online([agent])
    time.sleep(1)
    assert fleet.client.get_invocation(command.id, agent.node_id).status == "TimedOut"


def test_a_step_timeout_stops_that_step(shared_fleet):
    client = shared_fleet.client
    client.create_document(
        "slow-step",
        """
mainSteps:
  - {name: quick, action: runShellScript, inputs: {runCommand: 'echo quick'}}
  - {name: slow, action: runShellScript, inputs: {runCommand: 'sleep 60', timeoutSeconds: 2}}
""",
    )
    node = shared_fleet.agents[0].node_id
    command = client.send_command(document="slow-step", node_ids=[node])
    done = client.wait(command.id, timeout_s=60)
    inv = client.get_invocation(command.id, node)
    assert (done.status, inv.status, inv.status_detail) == (
        "TimedOut",
        "TimedOut",
        "ExecutionTimedOut",
    )
    assert [(s.name, s.status) for s in inv.steps] == [("quick", "Success"), ("slow", "TimedOut")]
    assert done.error_count == 1  # execution time-outs are errors


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"delivery_timeout_s": 29}, "Delivery timeout 29s is out of range"),
        ({"delivery_timeout_s": 2592001}, "Delivery timeout 2592001s is out of range"),
        ({"timeout_s": 0}, "Execution timeout 0s is out of range"),
        ({"timeout_s": 172801}, "Execution timeout 172801s is out of range"),
    ],
)
def test_out_of_range_timeouts_are_refused_not_clamped(shared_fleet, kwargs, phrase):
    with pytest.raises(ValidationError, match=phrase):
        shared_fleet.client.send_command(script="true", all_nodes=True, **kwargs)


def test_deadlines_are_shown_on_the_command(shared_fleet):
    command = shared_fleet.client.send_command(
        script="true", all_nodes=True, timeout_s=60, delivery_timeout_s=120
    )
    assert (command.execution_timeout_s, command.delivery_timeout_s) == (60, 120)
    assert (command.deliver_by - command.requested_at).total_seconds() == pytest.approx(120, abs=1)
    assert (command.expires_at - command.requested_at).total_seconds() == pytest.approx(180, abs=1)
    wait_for(lambda: shared_fleet.client.get_command(command.id).done, what="command done")
