"""Cancel: what has not started ends at once; what runs is stopped and confirmed."""

from __future__ import annotations

import os

import pytest

from fleetrun.core.errors import NotFoundError
from tests.harness import wait_for


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_cancelling_a_running_command_stops_its_process_tree(shared_fleet, tmp_path):
    client = shared_fleet.client
    node = shared_fleet.agents[0].node_id
    pids = tmp_path / "pids"
    command = client.send_command(
        script=f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait", node_ids=[node]
    )
    wait_for(
        lambda: pids.exists() and len(pids.read_text().split()) == 2, what="the script to start"
    )
    cancelled = client.cancel_command(command.id)
    assert cancelled.status in ("Cancelling", "Cancelled")
    done = client.wait(command.id, timeout_s=60)
    inv = client.get_invocation(command.id, node)
    assert (done.status, inv.status, inv.status_detail) == ("Cancelled", "Cancelled", "Cancelled")
    assert [t.status for t in inv.transitions][-2:] == ["Cancelling", "Cancelled"]
    for pid in map(int, pids.read_text().split()):
        wait_for(lambda pid=pid: not _alive(pid), timeout_s=15, what=f"process {pid} to be gone")


def test_cancelling_before_it_starts_ends_it_at_once(fleet, tmp_path):
    """Cancelled at once, and the agent connecting later never runs it: once it has run a
    later command, the cancelled one has left no trace and is still Cancelled."""
    [agent] = fleet.add_agents(1, start=False)
    marker = tmp_path / "ran"
    command = fleet.client.send_command(script=f"touch {marker}", node_ids=[agent.node_id])
    cancelled = fleet.client.cancel_command(command.id)
    assert (cancelled.status, cancelled.counts) == ("Cancelled", {"Cancelled": 1})
    agent.start()
    fleet.wait_online([agent])
    later = fleet.client.send_command(script="echo later", node_ids=[agent.node_id])
    assert fleet.client.wait(later.id, timeout_s=60).status == "Success"
    inv = fleet.client.get_invocation(command.id, agent.node_id)
    assert (inv.status, inv.stdout, inv.started_at) == ("Cancelled", "", None)
    assert not marker.exists()


def test_cancelling_after_the_end_changes_nothing(shared_fleet):
    client = shared_fleet.client
    command = client.send_command(script="echo done", all_nodes=True)
    client.wait(command.id, timeout_s=60)
    after = client.cancel_command(command.id)
    assert (after.status, after.counts) == ("Success", {"Success": 3})


def test_cancelling_on_some_nodes_leaves_the_others_running(shared_fleet):
    client = shared_fleet.client
    first, second = shared_fleet.agents[0].node_id, shared_fleet.agents[1].node_id
    command = client.send_command(script="sleep 3; echo finished", node_ids=[first, second])
    wait_for(
        lambda: client.get_command(command.id).counts.get("InProgress") == 2, what="both running"
    )
    client.cancel_command(command.id, [first])
    done = client.wait(command.id, timeout_s=60)
    assert done.status == "Cancelled"
    assert client.get_invocation(command.id, first).status == "Cancelled"
    other = client.get_invocation(command.id, second)
    assert (other.status, other.stdout) == ("Success", "finished\n")


def test_cancel_names_what_it_cannot_find(shared_fleet):
    client = shared_fleet.client
    with pytest.raises(NotFoundError, match="No command"):
        client.cancel_command("00000000-0000-4000-8000-000000000000")
    command = client.send_command(script="true", node_ids=[shared_fleet.agents[0].node_id])
    with pytest.raises(NotFoundError, match="no invocation on node n-00000000000000009"):
        client.cancel_command(command.id, ["n-00000000000000009"])
    assert os.getpid()
