"""Run commands on real agents: the Azure semantics (reference §2, §4, §9.3 items 1-11),
built on commands and invocations."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from fleetrun.core.errors import ConflictError
from tests.harness import wait_for, wait_for_pid

# Exits 0 while the process runs (a zombie does not count).
ALIVE = "sh -c 'grep -qv \") Z \" /proc/$0/stat 2>/dev/null'"
FINISHED = {"Succeeded", "Failed", "TimedOut", "Canceled", "Unknown"}


@pytest.fixture(scope="module")
def rc_fleet(tmp_path_factory):
    from tests.harness import Fleet

    # Tests that stop, kill or reconfigure an agent enroll one of their own here.
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


def _settled(client, node):
    """Wait until the node's agent has taken and finished a later command: what it was
    sent before (or would have run on its own) is behind it, so a test can then assert
    that something did not run, without a fixed sleep."""
    probe = client.send_command(script="true", node_ids=[node], comment="probe")
    assert client.wait(probe.id, timeout_s=60).status == "Success"


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


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
    # That it did not run: the node runs a name's runs in order, so once the later ones
    # are done the marker has exactly one line per run below.
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


def test_a_changed_put_stops_the_running_tree_before_the_new_run(rc_fleet, tmp_path):
    """§9.3 item 2: the previous run's whole process tree is gone before the next starts."""
    client, node = rc_fleet.client, _node(rc_fleet)
    child = tmp_path / "child"
    client.put_run_command(node, "tree", script=f"sleep 300 & echo $! > {child}; wait")
    wait_for(lambda: child.exists() and child.read_text().strip(), what="the child to start")
    pid = int(child.read_text())
    # The script runs on the node before the server has stored its InProgress state.
    wait_for(
        lambda: (
            (rc := client.get_run_command(node, "tree")).instanceView.executionState == "Running"
            and rc
        ),
        what="the run to be Running",
    )
    client.put_run_command(node, "tree", script=f"{ALIVE} {pid} || echo second")
    done = _wait(client, node, "tree")
    assert done.instanceView.executionState == "Succeeded", done.instanceView
    assert done.instanceView.output == "second\n"
    assert not _alive(pid)
    old = client.list_run_command_runs(node, "tree")[1]
    assert old.instanceView.executionState == "Canceled"
    client.delete_run_command(node, "tree")


def test_delete_while_running_stops_the_script_and_removes_the_resource(rc_fleet, tmp_path):
    """§9.3 item 3."""
    client, node = rc_fleet.client, _node(rc_fleet)
    pidfile = tmp_path / "pid"
    client.put_run_command(node, "doomed", script=f"echo $$ > {pidfile}; sleep 300")
    pid = wait_for_pid(pidfile)
    gone = client.delete_run_command(node, "doomed")
    assert gone.provisioningState == "Deleting"
    wait_for(lambda: not _alive(pid), what="the script to stop")
    assert "doomed" not in [rc.name for rc in client.list_run_commands(node)]
    with pytest.raises(Exception, match="has no run command 'doomed'"):
        client.get_run_command(node, "doomed")


def test_names_run_in_parallel_and_the_26th_is_refused(rc_fleet):
    """§9.3 item 4 (on its own node: 25 fill it)."""
    client, node = rc_fleet.client, _node(rc_fleet, 1)
    start = time.monotonic()
    for i in range(3):
        client.put_run_command(node, f"par{i}", script="sleep 2")
    for i in range(3):
        assert _wait(client, node, f"par{i}").instanceView.executionState == "Succeeded"
    assert time.monotonic() - start < 5.5  # three 2 s scripts at once, not one after another
    for i in range(3, 25):
        client.put_run_command(node, f"par{i}", script="true")
    with pytest.raises(ConflictError) as refused:
        client.put_run_command(node, "par25", script="true")
    assert "maximum number of run commands on a node (max=25, current=25)" in str(refused.value)
    assert len(client.list_run_commands(node)) == 25
    client.put_run_command(node, "par0", script="true")  # updating one is still fine
    for i in range(25):
        client.delete_run_command(node, f"par{i}")
    assert client.list_run_commands(node) == []


def test_async_execution_succeeds_provisioning_while_the_script_runs(rc_fleet):
    """§9.3 item 5."""
    client, node = rc_fleet.client, _node(rc_fleet)
    client.put_run_command(node, "bg", script="sleep 3; echo late", async_execution=True)
    running = client.wait_run_command(
        node, "bg", timeout_s=30, until=lambda rc: rc.instanceView.executionState == "Running"
    )
    assert running.provisioningState == "Succeeded"
    done = _wait(client, node, "bg")
    assert (done.provisioningState, done.instanceView.executionState) == ("Succeeded", "Succeeded")
    assert done.instanceView.output == "late\n"
    waited = client.put_run_command(node, "fg", script="sleep 2")
    assert waited.provisioningState == "Creating"
    running = client.wait_run_command(
        node, "fg", timeout_s=30, until=lambda rc: rc.instanceView.executionState == "Running"
    )
    assert running.provisioningState == "Creating"
    for name in ("bg", "fg"):
        _wait(client, node, name)
        client.delete_run_command(node, name)


@pytest.mark.parametrize(
    ("treat", "provisioning"), [(True, "Failed"), (False, "Succeeded")], ids=["treat", "plain"]
)
def test_treat_failure_as_deployment_failure_decides_provisioning(rc_fleet, treat, provisioning):
    """§9.3 item 6."""
    client, node = rc_fleet.client, _node(rc_fleet)
    client.put_run_command(
        node, "exit5", script="exit 5", treat_failure_as_deployment_failure=treat
    )
    done = _wait(client, node, "exit5")
    assert done.provisioningState == provisioning
    view = done.instanceView
    assert (view.executionState, view.exitCode) == ("Failed", 5)
    assert "exited with code 5" in view.executionMessage
    client.delete_run_command(node, "exit5")


def test_timeout_stops_the_whole_tree_and_says_timed_out(rc_fleet, tmp_path):
    """§9.3 item 7: TimedOut (not Azure's Failed/-1), and no grandchild survives."""
    client, node = rc_fleet.client, _node(rc_fleet)
    child = tmp_path / "child"
    started = time.monotonic()
    client.put_run_command(
        node, "slow", script=f"sleep 60 & echo $! > {child}; sleep 60", timeout_s=2
    )
    done = _wait(client, node, "slow")
    assert time.monotonic() - started < 20
    assert done.instanceView.executionState == "TimedOut"
    assert done.provisioningState == "Succeeded"
    wait_for(lambda: not _alive(int(child.read_text())), what="the grandchild to be gone")
    client.delete_run_command(node, "slow")


def test_instance_view_holds_the_last_4096_bytes_and_partial_output_while_running(rc_fleet):
    """§9.3 item 8: the full stream stays in the output store."""
    client, node = rc_fleet.client, _node(rc_fleet)
    script = (
        "i=0; while [ $i -lt 1000 ]; do printf 'line-%04d\\n' $i; i=$((i+1)); done; "
        "echo err-start >&2; sleep 2; echo done"
    )
    client.put_run_command(node, "big", script=script)
    partial = client.wait_run_command(
        node, "big", timeout_s=30, until=lambda rc: "err-start" in rc.instanceView.error
    )
    assert partial.instanceView.executionState == "Running"
    assert partial.instanceView.output.endswith("line-0999\n")
    done = _wait(client, node, "big")
    out = done.instanceView.output
    assert len(out.encode()) == 4096 and out.endswith("line-0999\ndone\n")
    run = client.list_run_command_runs(node, "big")[0]
    full = client.get_output(run.commandId, node).decode()
    assert full.startswith("line-0000\n") and len(full) == 1000 * 10 + 5
    client.delete_run_command(node, "big")


def test_parameters_are_env_and_argv_public_before_protected_and_secrets_stay_secret(
    rc_fleet, tmp_path
):
    """§9.3 item 9: named -> environment, nameless -> argv (no shell string), public
    before protected; protected values are never returned, logged or stored in clear."""
    client, node = rc_fleet.client, _node(rc_fleet)
    secret = "s3cret-Value-42"
    script = 'printf "%s|" "$#" "$1" "$2" "$3" "$X" "$PW"; printf "$PW" > ' + str(tmp_path / "pw")
    client.put_run_command(
        node,
        "params",
        script=script,
        parameters={"X": "1"},
        arguments=["a b", "$(reboot)"],
        protected_parameters={"PW": secret},
        protected_arguments=[secret + "-arg"],
        run_as_password="hunter2-password",
    )
    done = _wait(client, node, "params")
    assert done.instanceView.executionState == "Succeeded", done.instanceView
    # The script saw everything; what it printed of the secrets is masked.
    assert done.instanceView.output == "3|a b|$(reboot)|***|1|***|"
    assert (tmp_path / "pw").read_text() == secret
    raw = httpx.get(
        f"{rc_fleet.server.url}/v1/nodes/{node}/run-commands/params",
        headers={"authorization": f"Bearer {rc_fleet.server.token}"},
    ).text
    assert "protectedParameters" not in raw and "runAsPassword" not in raw
    for text in (raw, rc_fleet.logs()):
        assert secret not in text and "hunter2-password" not in text
    for path in rc_fleet.server.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and b"hunter2-password" not in data, path
    client.delete_run_command(node, "params")


def test_run_as_user_gets_its_uid_and_home_and_a_missing_user_fails_clearly(rc_fleet):
    """§9.3 item 10. The node's local config has the last word on who scripts run as."""
    if os.geteuid() != 0:
        pytest.skip("run-as needs an agent running as root")
    import pwd
    import subprocess
    import sys

    refused_node = _node(rc_fleet)
    rc_fleet.client.put_run_command(refused_node, "as", script="id", run_as_user="nobody")
    refused = _wait(rc_fleet.client, refused_node, "as")
    assert refused.instanceView.executionState == "Failed"
    assert "runcommand.allowed_users" in refused.instanceView.executionMessage
    assert refused.provisioningState == "Failed"  # it never started
    rc_fleet.client.delete_run_command(refused_node, "as")

    [agent] = rc_fleet.add_agents(1, start=False)
    subprocess.run(
        [
            sys.executable,
            *("-m", "fleetrun.agent", "config", "set", "runcommand.allowed_users"),
            *("nobody,no-such-user-x", "--state-dir", str(agent.state_dir)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    agent.start()
    rc_fleet.wait_online([agent])
    nobody = pwd.getpwnam("nobody")
    client, node = rc_fleet.client, agent.node_id
    client.put_run_command(node, "as", script='echo "$(id -u) $HOME"', run_as_user="nobody")
    done = _wait(client, node, "as")
    assert done.instanceView.output == f"{nobody.pw_uid} {nobody.pw_dir}\n", done.instanceView
    assert done.runAsUser == "nobody"
    client.put_run_command(node, "as", script="id", run_as_user="no-such-user-x")
    failed = _wait(client, node, "as")
    assert failed.instanceView.executionState == "Failed"
    assert "no-such-user-x" in failed.instanceView.executionMessage


def test_run_after_orders_run_commands_and_a_failed_one_stops_what_follows(rc_fleet, tmp_path):
    client, node = rc_fleet.client, _node(rc_fleet)
    log = tmp_path / "order"
    client.put_run_command(node, "first", script=f"sleep 2; echo first >> {log}")
    client.put_run_command(node, "second", script=f"echo second >> {log}", run_after=["first"])
    waiting = client.get_run_command(node, "second")
    assert waiting.instanceView.executionState == "Pending"
    assert _wait(client, node, "second").instanceView.executionState == "Succeeded"
    assert log.read_text() == "first\nsecond\n"
    client.put_run_command(node, "first", script="exit 3", treat_failure_as_deployment_failure=True)
    client.rerun_run_command(node, "second")
    skipped = _wait(client, node, "second")
    assert skipped.instanceView.executionState == "Failed"
    assert "first, which it runs after, failed" in skipped.instanceView.executionMessage
    with pytest.raises(Exception, match="makes a loop"):
        client.put_run_command(node, "first", script="true", run_after=["second"])
    for name in ("second", "first"):
        client.delete_run_command(node, name)


def test_an_agent_killed_mid_run_closes_the_run_out_and_never_runs_it_again(rc_fleet, tmp_path):
    """§9.3 item 11."""
    agent = rc_fleet.add_agent()
    client, node = rc_fleet.client, agent.node_id
    marker, pidfile = tmp_path / "runs", tmp_path / "pid"
    client.put_run_command(
        node, "crash", script=f"echo run >> {marker}; echo $$ > {pidfile}; sleep 300"
    )
    pid = wait_for_pid(pidfile)
    agent.kill()
    os.kill(pid, signal.SIGKILL)  # as a reboot would
    agent.start()
    done = _wait(client, node, "crash")
    view = done.instanceView
    assert view.executionState == "Failed" and "agent restarted" in view.executionMessage
    _settled(client, node)
    assert marker.read_text() == "run\n"
    assert client.get_run_command(node, "crash").generation == 1


def test_an_offline_node_runs_it_on_reconnect_unless_deleted_first(rc_fleet, tmp_path):
    """§8 of the issue: Delayed while offline, then run once the node connects."""
    agent = rc_fleet.add_agent()
    client, node = rc_fleet.client, agent.node_id
    marker = tmp_path / "ran"
    agent.stop()
    wait_for(lambda: rc_fleet.ping_status(agent) != "Online", timeout_s=10, what="the node offline")
    client.put_run_command(node, "later", script=f"echo later >> {marker}")
    client.put_run_command(node, "never", script=f"echo never >> {marker}")
    pending = client.wait_run_command(
        node,
        "later",
        timeout_s=30,
        until=lambda rc: "offline" in rc.instanceView.executionMessage,
    )
    assert pending.instanceView.executionState == "Pending"
    client.delete_run_command(node, "never")
    agent.start()
    assert _wait(client, node, "later").instanceView.executionState == "Succeeded"
    _settled(client, node)
    assert marker.read_text() == "later\n"
    assert "never" not in [rc.name for rc in client.list_run_commands(node)]


def test_each_state_of_a_run_is_an_event_rules_can_match(rc_fleet):
    """Run-command state changes reach the event log (and so rules): Pending, then
    Running, then Succeeded, each naming the run, its node and its run command."""
    client, node = rc_fleet.client, _node(rc_fleet)
    created = client.put_run_command(node, "announced", script="echo hi")
    _wait(client, node, "announced")

    def states():
        found = [
            e
            for e in client.list_events(detail_type="Run Command State-change Notification")
            if e.detail["run-command"] == "announced" and e.detail["node-id"] == node
        ]
        seen = [e.detail["execution-state"] for e in reversed(found)]
        return found if "Succeeded" in seen else None

    found = wait_for(states, what="the run command's events")
    assert [e.detail["execution-state"] for e in reversed(found)] == [
        "Pending",
        "Running",
        "Succeeded",
    ]
    last = found[0]
    assert last.resources[:2] == [
        f"frn:fleetrun:runcommand/{node}/announced",
        f"frn:fleetrun:node/{node}",
    ]
    assert last.detail["provisioning-state"] == "Succeeded"
    assert last.detail["document-name"] == "RunShellScript" and last.detail["command-id"]
    assert {e.detail["run-id"] for e in found} == {created.currentRunId}
