"""Every status is reachable and every transition is recorded with its time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetrun.agent.service import EXIT_TERMINAL
from tests.harness import Fleet, wait_for


@pytest.fixture(scope="module")
def statuses_fleet(tmp_path_factory):
    """One server for the module: each test enrolls the nodes it sends to (and deletes)."""
    f = Fleet(tmp_path_factory.mktemp("statuses")).start()
    try:
        yield f
    finally:
        f.close()


def test_transitions_are_recorded_in_order_with_times(statuses_fleet):
    client = statuses_fleet.client
    node = statuses_fleet.add_agent().node_id
    command = client.send_command(script="true", node_ids=[node])
    client.wait(command.id, timeout_s=60)
    inv = client.get_invocation(command.id, node)
    assert [t.status for t in inv.transitions] == ["Pending", "InProgress", "Success"]
    times = [t.at for t in inv.transitions]
    assert times == sorted(times)


def test_deleting_a_node_makes_its_pending_work_undeliverable_and_shuts_its_agent_out(
    statuses_fleet,
):
    [agent] = statuses_fleet.add_agents(1)
    agent.stop()
    wait_for(lambda: statuses_fleet.ping_status(agent) == "ConnectionLost", what="offline")
    other = statuses_fleet.add_agent()
    command = statuses_fleet.client.send_command(
        script="echo hi", node_ids=[agent.node_id, other.node_id]
    )
    statuses_fleet.client.wait(command.id, timeout_s=30) if False else wait_for(
        lambda: statuses_fleet.client.get_invocation(command.id, other.node_id).status == "Success",
        what="other done",
    )
    statuses_fleet.client.delete_node(agent.node_id)
    done = statuses_fleet.client.wait(command.id, timeout_s=30)
    inv = statuses_fleet.client.get_invocation(command.id, agent.node_id)
    assert (inv.status, inv.status_detail) == ("Undeliverable", "NodeDeleted")
    assert (done.status, done.counts) == ("Success", {"Success": 1, "Undeliverable": 1})
    assert agent.node_id not in {n.id for n in statuses_fleet.client.list_nodes()}
    # the deregistered agent is refused, and says what to do
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "run", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # with the status that keeps systemd from restarting it (RestartPreventExitStatus)
    assert done.returncode == EXIT_TERMINAL and "register this node again" in done.stderr
