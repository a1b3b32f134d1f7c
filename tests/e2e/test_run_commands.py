"""Run commands on real agents: the Azure semantics (reference §2, §4, §9.3 items 1-11),
built on commands and invocations."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from fleetrun.core.errors import ConflictError
from tests.harness import wait_for

FINISHED = {"Succeeded", "Failed", "TimedOut", "Canceled", "Unknown"}


@pytest.fixture(scope="module")
def rc_fleet(tmp_path_factory):
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("rc")).start()
    try:
        f.add_agents(2, tags={"env": "test"}, prefix="rc")
        yield f
    finally:
        f.close()


def _node(fleet, index=0):
    return fleet.agents[index].node_id


def _wait(client, node, name, timeout_s=60):
    return client.wait_run_command(node, name, timeout_s=timeout_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_put_runs_once_identical_put_does_not_and_a_changed_one_runs_again(rc_fleet, tmp_path):
    """§9.3 item 1, and history: each execution is a run with its own id."""
    client, node = rc_fleet.client, _node(rc_fleet)
    marker = tmp_path / "runs"
    script = f"echo run >> {marker}; echo hello"
    created = client.put_run_command(node, "once", script=script)
    assert created.provisioningState == "Creating" and created.generation == 1
    done = _wait(client, node, "once")
    assert done.instanceView.executionState == "Succeeded"
    assert done.provisioningState == "Succeeded"
    assert (done.instanceView.exitCode, done.instanceView.output) == (0, "hello\n")
    assert done.instanceView.startTime <= done.instanceView.endTime
    again = client.put_run_command(node, "once", script=script)
    assert again.generation == 1 and again.currentRunId == done.currentRunId
    time.sleep(1)
    assert marker.read_text() == "run\n"
    changed = client.put_run_command(node, "once", script=script + " again")
    assert changed.generation == 2 and changed.provisioningState == "Updating"
    assert _wait(client, node, "once").instanceView.output == "hello again\n"
    rerun = client.rerun_run_command(node, "once")
    assert rerun.generation == 3
    assert _wait(client, node, "once").instanceView.executionState == "Succeeded"
    assert marker.read_text() == "run\n" * 3
    runs = client.list_run_command_runs(node, "once")
    assert [r.generation for r in runs] == [3, 2, 1]
    assert [r.reason for r in runs] == ["Rerun", "Update", "Create"]
    assert all(r.id.startswith("rc-") and r.commandId for r in runs)
    assert len({r.id for r in runs}) == 3
    assert runs[2].instanceView.output == "hello\n"  # history survives re-runs
    # The run is a command like any other: the engine carried it.
    command = client.get_command(runs[0].commandId)
    assert command.status == "Success" and command.target_count == 1
    assert [rc.name for rc in client.list_run_commands(node)].count("once") == 1
    client.delete_run_command(node, "once")
