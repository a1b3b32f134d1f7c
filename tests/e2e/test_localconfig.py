"""The node has the last word: its local configuration, changed only on the node,
takes effect without a restart and is reported read-only."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.harness import wait_for


def agent_cli(agent, *args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args, "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def _run(fleet, agent, **kwargs):
    command = fleet.client.send_command(node_ids=[agent.node_id], **kwargs)
    fleet.client.wait(command.id, timeout_s=60)
    return fleet.client.get_invocation(command.id, agent.node_id)


@pytest.fixture
def node(fleet):
    return fleet, fleet.add_agent()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    """One node for the cases that must change nothing: each starts from the same file."""
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("localconfig")).start()
    try:
        yield f, f.add_agent()
    finally:
        f.close()


def test_config_set_get_list_clear(node):
    _, agent = node
    assert (
        agent_cli(
            agent, "config", "set", "extensions.blocklist", "fleetrun/runShellScript"
        ).returncode
        == 0
    )
    added = agent_cli(
        agent,
        "config",
        "set",
        "extensions.blocklist",
        "fleetrun/runPythonScript",
        "--add",
        "--json",
    )
    assert json.loads(added.stdout) == {
        "extensions.blocklist": ["fleetrun/runShellScript", "fleetrun/runPythonScript"]
    }
    removed = agent_cli(
        agent,
        "config",
        "set",
        "extensions.blocklist",
        "fleetrun/runShellScript",
        "--remove",
        "--json",
    )
    assert json.loads(removed.stdout) == {"extensions.blocklist": ["fleetrun/runPythonScript"]}
    assert (
        agent_cli(agent, "config", "get", "extensions.blocklist").stdout.strip()
        == "fleetrun/runPythonScript"
    )
    listed = json.loads(agent_cli(agent, "config", "list", "--json").stdout)
    assert listed["extensions.enabled"] is True and listed["config.mode"] == "full"
    path = agent.state_dir / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert agent_cli(agent, "config", "clear", "extensions.blocklist").returncode == 0
    assert agent_cli(agent, "config", "get", "extensions.blocklist").stdout.strip() == "(none)"


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (["set", "no.such.key", "1"], "is not a configuration key"),
        (["set", "extensions.enabled", "sometimes"], "takes true or false"),
        (["set", "security.trusted_publishers", "AAAA"], "is not a publisher key"),
        (["set", "extensions.allowlist", "justaname"], "is not a handler name"),
        (["set", "runcommand.max_timeout", "soon"], "whole number"),
        (["set", "config.mode", "full", "--add"], "--add and --remove work on lists"),
        (["get", "nope"], "is not a configuration key"),
    ],
)
def test_config_misuse_gets_one_sentence_and_changes_nothing(shared_node, args, fault):
    _, agent = shared_node
    agent_cli(agent, "config", "set", "runcommand.max_timeout", "900")
    before = (agent.state_dir / "config.toml").read_bytes()
    done = agent_cli(agent, "config", *args)
    assert done.returncode == 1 and fault in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (agent.state_dir / "config.toml").read_bytes() == before


@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv is not available")
def test_config_set_without_write_permission_is_refused(node):
    """Someone who may read the file but not write it (here: root without the capability
    that bypasses file permissions, on a read-only file and directory)."""
    _, agent = node
    agent_cli(agent, "config", "set", "runcommand.max_timeout", "900")
    path = agent.state_dir / "config.toml"
    path.chmod(0o444)
    agent.state_dir.chmod(0o555)
    before = path.read_bytes()
    try:
        done = subprocess.run(
            [
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                "--inh-caps",
                "-dac_override,-dac_read_search",
                sys.executable,
                "-m",
                "fleetrun.agent",
                "config",
                "set",
                "extensions.enabled",
                "false",
                "--state-dir",
                str(agent.state_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        agent.state_dir.chmod(0o700)
        path.chmod(0o600)
    assert (
        done.returncode == 1
        and "permission denied" in done.stderr
        and "Traceback" not in done.stderr
    )
    assert path.read_bytes() == before


def test_a_blocked_handler_is_refused_before_anything_runs_and_reported(node, tmp_path):
    fleet, agent = node
    marker = tmp_path / "ran"
    assert (
        agent_cli(
            agent, "config", "set", "extensions.blocklist", "fleetrun/runShellScript"
        ).returncode
        == 0
    )
    inv = _run(fleet, agent, script=f"touch {marker}")
    assert (inv.status, inv.status_detail) == ("Failed", "BlockedByLocalPolicy")
    assert "extensions.blocklist includes fleetrun/runShellScript" in inv.message
    assert not marker.exists()
    python = _run(
        fleet, agent, document="RunPythonScript", parameters={"commands": ["print('py')"]}
    )
    assert (python.status, python.stdout) == ("Success", "py\n")
    # the server shows the node's configuration, read-only
    wait_for(
        lambda: (
            fleet.client.get_node(agent.node_id).local_config.get("extensions.blocklist")
            == ["fleetrun/runShellScript"]
        ),
        what="the config reported",
    )
    agent_cli(agent, "config", "clear", "extensions.blocklist")
    assert _run(fleet, agent, script="echo again").stdout == "again\n"  # no restart needed


def test_disabled_allow_none_and_monitor_mode(node):
    fleet, agent = node
    agent_cli(agent, "config", "set", "extensions.enabled", "false")
    assert "extensions.enabled is false" in _run(fleet, agent, script="true").message
    agent_cli(agent, "config", "clear", "extensions.enabled")
    agent_cli(agent, "config", "set", "extensions.allowlist", "Allow/None")
    assert "Allow/None" in _run(fleet, agent, script="true").message
    agent_cli(agent, "config", "clear", "extensions.allowlist")
    agent_cli(agent, "config", "set", "config.mode", "monitor")
    assert "config.mode is monitor" in _run(fleet, agent, script="true").message
    info = _run(fleet, agent, document="GetNodeInfo")
    assert info.status == "Success"
    facts = json.loads(info.stdout)
    assert facts["hostname"] and "disk_bytes" in facts and "uptime_s" in facts
    locked = agent_cli(agent, "config", "set", "extensions.allowlist", "fleetrun/runShellScript")
    assert locked.returncode == 1 and "config.mode is monitor" in locked.stderr
    listed = json.loads(agent_cli(agent, "config", "list", "--json").stdout)
    assert listed["extensions.allowlist"] == ["fleetrun/getNodeInfo"]


def test_run_as_users_and_timeouts_can_be_capped_locally(node):
    fleet, agent = node
    refused = _run(fleet, agent, script="id -un", run_as="nobody")
    assert (
        refused.status_detail == "BlockedByLocalPolicy"
        and "runcommand.allowed_users" in refused.message
    )
    if os.geteuid() == 0:
        agent_cli(agent, "config", "set", "runcommand.allowed_users", "nobody")
        assert _run(fleet, agent, script="id -un", run_as="nobody").stdout == "nobody\n"
    agent_cli(agent, "config", "set", "runcommand.max_timeout", "60")
    capped = _run(fleet, agent, script="true", timeout_s=3600)
    assert "runcommand.max_timeout is 60 s" in capped.message
    assert _run(fleet, agent, script="true", timeout_s=60).status == "Success"


def test_cancel_is_always_allowed(node):
    fleet, agent = node
    command = fleet.client.send_command(script="sleep 120", node_ids=[agent.node_id])
    wait_for(
        lambda: fleet.client.get_command(command.id).counts.get("InProgress") == 1, what="running"
    )
    agent_cli(agent, "config", "set", "extensions.enabled", "false")
    fleet.client.cancel_command(command.id)
    assert fleet.client.wait(command.id, timeout_s=60).status == "Cancelled"


def test_an_unreadable_configuration_refuses_everything(node):
    fleet, agent = node
    (agent.state_dir / "config.toml").write_text("this is [not toml")
    inv = _run(fleet, agent, script="true")
    assert inv.status_detail == "BlockedByLocalPolicy" and "cannot be read" in inv.message
