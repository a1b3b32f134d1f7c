"""Deadlines an agent enforces: a step's time-out stops that step. (Delivery deadlines,
expiry and the limits on time-outs are the server's alone: tests/api/test_deadlines.py
sets the clock for them.)"""

from __future__ import annotations


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
