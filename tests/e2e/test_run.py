"""Running scripts on real agents: results, output, timeouts, offline nodes, scale."""

from __future__ import annotations

import hashlib
import os
import time

from tests.harness import wait_for


def _invocations(client, command_id):
    return {inv.node_name: inv for inv in client.list_invocations(command_id, details=True)}


def test_a_script_runs_everywhere_and_reports_exit_code_output_and_times(shared_fleet):
    client = shared_fleet.client
    command = client.send_command(
        script='echo "out $FLEETRUN_NODE_ID"; echo err >&2', all_nodes=True, comment="hello"
    )
    assert command.target_count == 3 and command.comment == "hello"
    done = client.wait(command.id, timeout_s=60)
    assert done.status == "Success" and done.completed_count == 3 and done.error_count == 0
    for inv in client.list_invocations(command.id, details=True):
        assert inv.status == "Success" and inv.exit_code == 0
        assert inv.stdout == f"out {inv.node_id}\n" and inv.stderr == "err\n"
        assert inv.requested_at <= inv.started_at <= inv.ended_at
        [step] = inv.steps
        assert step.status == "Success" and step.stdout_bytes == len(inv.stdout)


def test_a_non_zero_exit_fails_the_invocation_and_the_command(shared_fleet):
    client = shared_fleet.client
    command = client.send_command(script="echo before; exit 7", tags={"role": "db"})
    done = client.wait(command.id, timeout_s=60)
    assert done.status == "Failed" and done.status_detail == "Failed" and done.error_count == 1
    [inv] = client.list_invocations(command.id, details=True)
    assert (inv.status, inv.status_detail, inv.exit_code, inv.stdout) == (
        "Failed",
        "Failed",
        7,
        "before\n",
    )


def test_tag_targets_select_matching_nodes_only(shared_fleet):
    client = shared_fleet.client
    command = client.send_command(script="true", tags={"role": "web", "env": "test"})
    assert command.target_count == 2
    assert client.wait(command.id, timeout_s=60).status == "Success"
    assert set(_invocations(client, command.id)) == {"web01", "web02"}
    none = client.send_command(script="true", tags={"role": "nope"})
    assert (none.status, none.status_detail, none.target_count) == ("Failed", "NoInstancesInTag", 0)


def test_several_invocations_run_at_once_on_one_node(shared_fleet):
    client = shared_fleet.client
    node = next(a.node_id for a in shared_fleet.agents if a.name == "db03")
    commands = [client.send_command(script="sleep 2", node_ids=[node]) for _ in range(3)]
    for command in commands:
        assert client.wait(command.id, timeout_s=60).status == "Success"
    runs = [client.get_invocation(c.id, node) for c in commands]
    # side by side: each started before any of the others ended
    assert max(r.started_at for r in runs) < min(r.ended_at for r in runs)


def test_ten_megabytes_of_output_arrive_byte_exact(shared_fleet):
    client = shared_fleet.client
    node = shared_fleet.agents[0].node_id
    script = (
        'python3 -c "import hashlib,sys\n'
        "out = sys.stdout.buffer\n"
        "for i in range(10 * 1024):\n"
        '    out.write(hashlib.sha256(str(i).encode()).digest() * 32)\n"'
    )
    expected = b"".join(hashlib.sha256(str(i).encode()).digest() * 32 for i in range(10 * 1024))
    assert len(expected) == 10 * 1024 * 1024
    command = client.send_command(script=script, node_ids=[node])
    assert client.wait(command.id, timeout_s=120).status == "Success"
    data = client.get_output(command.id, node, "stdout")
    assert (
        len(data) == len(expected)
        and hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()
    )
    inv = client.get_invocation(command.id, node)
    assert inv.stdout_truncated and len(inv.stdout) == 24_000
    assert inv.steps[0].stdout_bytes == len(expected)
    tail = client.get_output(command.id, node, "stdout", start=len(expected) - 100)
    assert tail == expected[-100:]


def test_a_timeout_kills_the_whole_process_tree(shared_fleet, tmp_path):
    client = shared_fleet.client
    node = shared_fleet.agents[1].node_id
    pids = tmp_path / "pids"
    script = (
        f"sleep 300 & echo $! > {pids}\n"
        f"sh -c 'sleep 301' & echo $! >> {pids}\n"
        f"setsid sleep 302 & echo $! >> {pids}\n"  # this one leaves the process group
        "echo started\n"
        "wait\n"
    )
    started = time.monotonic()
    command = client.send_command(script=script, node_ids=[node], timeout_s=2)
    done = client.wait(command.id, timeout_s=60)
    assert time.monotonic() - started < 15
    inv = client.get_invocation(command.id, node)
    assert (done.status, inv.status, inv.status_detail) == (
        "TimedOut",
        "TimedOut",
        "ExecutionTimedOut",
    ), inv
    assert inv.stdout == "started\n"
    assert inv.exit_code in (143, 137)  # 128 + SIGTERM, or SIGKILL after the grace period
    children = [int(p) for p in pids.read_text().split()]

    def all_gone() -> bool:
        return all(not _alive(pid) for pid in children)

    wait_for(all_gone, timeout_s=10, what="the script's children to be gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead, just not yet reaped
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_an_offline_node_is_delayed_then_runs_when_its_agent_starts(fleet):
    [agent] = fleet.add_agents(1, start=False)
    command = fleet.client.send_command(script="echo late", node_ids=[agent.node_id])

    def delayed() -> bool:
        return fleet.client.get_invocation(command.id, agent.node_id).status == "Delayed"

    wait_for(delayed, timeout_s=20, what="the invocation to be Delayed")
    assert fleet.client.get_command(command.id).status == "InProgress"
    agent.start()
    done = fleet.client.wait(command.id, timeout_s=60)
    assert done.status == "Success"
    assert fleet.client.get_invocation(command.id, agent.node_id).stdout == "late\n"


def test_a_command_reaches_twenty_agents(fleet):
    agents = fleet.add_agents(20, tags={"batch": "twenty"})
    command = fleet.client.send_command(script="echo $FLEETRUN_NODE_ID", tags={"batch": "twenty"})
    assert command.target_count == 20
    done = fleet.client.wait(command.id, timeout_s=120)
    assert done.status == "Success" and done.completed_count == 20
    outputs = {i.node_id: i.stdout for i in fleet.client.list_invocations(command.id, details=True)}
    assert outputs == {a.node_id: f"{a.node_id}\n" for a in agents}
