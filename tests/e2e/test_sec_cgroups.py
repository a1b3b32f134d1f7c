"""Nothing a script starts outlives a cancel, a timeout or a restart of the agent.

A descendant that leaves the process group (`setsid`) and drops
FLEETRUN_INVOCATION_ID from its environment escapes both of the agent's older
holds; only the invocation's cgroup (v2) still holds it. Where the agent cannot
manage cgroups these tests skip, and the process-group fallback is proven instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetrun.agent.cgroups import CgroupUnavailableError, locate
from tests.harness import wait_for


def _cgroups_unavailable() -> str | None:
    try:
        locate("n-probe")
    except CgroupUnavailableError as exc:
        return str(exc)
    return None


UNAVAILABLE = _cgroups_unavailable()
AGENT = [sys.executable, "-m", "fleetrun.agent"]
needs_cgroups = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"cgroup v2 is not available to the agent: {UNAVAILABLE}"
)


def _escape(pidfile: Path) -> str:
    """A script whose child leaves the group and the marker, then waits."""
    return (
        "setsid sh -c 'unset FLEETRUN_INVOCATION_ID; sleep 300 & echo $! > "
        f"{pidfile}' </dev/null >/dev/null 2>&1\nsleep 300\n"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _escaped(pidfile: Path):  # type: ignore[no-untyped-def]
    """The escaped pid once it is written; killed at the end whatever happened."""
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the escape")
    pid = int(pidfile.read_text())
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _status(agent) -> dict[str, object]:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [*AGENT, "status", "--json", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
    )
    # 0 connected, 4 running but not connected, 3 not running (docs/agent.md)
    assert done.returncode in (0, 3, 4), done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _cgroup_of(agent, invocation_id: str) -> Path:  # type: ignore[no-untyped-def]
    return locate(agent.node_id) / f"inv-{invocation_id}"


@needs_cgroups
def test_a_cancel_kills_a_descendant_that_left_the_group_and_the_marker(shared_fleet, tmp_path):
    agent = shared_fleet.agents[0]
    client = shared_fleet.client
    pidfile = tmp_path / "escaped"
    command = client.send_command(script=_escape(pidfile), node_ids=[agent.node_id])
    with _escaped(pidfile) as pid:
        client.cancel_command(command.id)
        done = client.wait(command.id, timeout_s=30)
        inv = client.get_invocation(command.id, agent.node_id)
        assert done.status == "Cancelled"
        wait_for(lambda: not _alive(pid), timeout_s=5, what=f"escaped process {pid} to be gone")
    # The emptied cgroup is removed.
    wait_for(lambda: not _cgroup_of(agent, inv.id).exists(), timeout_s=5, what="cgroup removal")


@needs_cgroups
def test_a_timeout_kills_a_descendant_that_left_the_group_and_the_marker(shared_fleet, tmp_path):
    agent = shared_fleet.agents[1]
    client = shared_fleet.client
    pidfile = tmp_path / "escaped"
    command = client.send_command(script=_escape(pidfile), node_ids=[agent.node_id], timeout_s=3)
    with _escaped(pidfile) as pid:
        done = client.wait(command.id, timeout_s=30)
        inv = client.get_invocation(command.id, agent.node_id)
        assert (done.status, inv.status_detail) == ("TimedOut", "ExecutionTimedOut")
        wait_for(lambda: not _alive(pid), timeout_s=5, what=f"escaped process {pid} to be gone")
    wait_for(lambda: not _cgroup_of(agent, inv.id).exists(), timeout_s=5, what="cgroup removal")


@needs_cgroups
def test_after_a_kill_9_the_restarted_agent_kills_what_was_left_through_the_cgroup(fleet, tmp_path):
    agent = fleet.add_agent()
    pidfile = tmp_path / "escaped"
    command = fleet.client.send_command(script=_escape(pidfile), node_ids=[agent.node_id])
    with _escaped(pidfile) as pid:
        agent.kill()  # SIGKILL: the agent has no chance to stop anything
        assert _alive(pid)
        agent.start()
        done = fleet.client.wait(command.id, timeout_s=60)
        inv = fleet.client.get_invocation(command.id, agent.node_id)
        assert (done.status, inv.status_detail) == ("Failed", "AgentRestarted")
        wait_for(lambda: not _alive(pid), timeout_s=5, what=f"escaped process {pid} to be gone")
    assert not _cgroup_of(agent, inv.id).exists()
    status = _status(agent)
    assert status["containment"] == "cgroup"
    # Whether each step start waits for the kernel: what this machine's mount says.
    cgroup2 = next(
        line.partition(" - ")[2].split(" ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.partition(" - ")[2].startswith("cgroup2 ")
    )
    favoured = "favordynmods" in cgroup2[2].split(",")
    assert status["cgroup_favordynmods"] == ("yes" if favoured else "no")


@needs_cgroups
def test_a_stopped_agent_leaves_no_cgroup_behind(fleet):
    agent = fleet.add_agent()
    fleet.client.wait(
        fleet.client.send_command(script="echo hi", node_ids=[agent.node_id]).id, timeout_s=30
    )
    tree = locate(agent.node_id)
    assert (tree / "agent").is_dir()
    agent.stop()
    assert not tree.exists()
    assert _status(agent)["containment"] == "cgroup"  # what the next start would use


def test_the_fallback_is_reported_and_still_kills_a_child_that_left_the_group(fleet, tmp_path):
    """Process groups plus the environment marker: a child that only calls setsid is
    still found and killed."""
    [agent] = fleet.add_agents(1, start=False)
    agent.args = ["--containment", "process-group"]
    agent.start()
    fleet.wait_online([agent])
    assert _status(agent)["containment"] == "process-group"
    pidfile = tmp_path / "escaped"
    script = f"setsid sh -c 'sleep 300 & echo $! > {pidfile}' </dev/null >/dev/null 2>&1\n"
    command = fleet.client.send_command(script=script + "sleep 300\n", node_ids=[agent.node_id])
    with _escaped(pidfile) as pid:
        fleet.client.cancel_command(command.id)
        assert fleet.client.wait(command.id, timeout_s=30).status == "Cancelled"
        wait_for(lambda: not _alive(pid), timeout_s=5, what=f"process {pid} to be gone")
