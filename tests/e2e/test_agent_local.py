"""What stays on the node: its audit log, its service unit, its spool across outages."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import wait_for


def agent_cli(agent, *args):
    return subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args, "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_local_audit_log_has_a_line_per_execution(fleet):
    agent = fleet.add_agent()
    client = fleet.client
    ok = client.send_command(script="echo fine", node_ids=[agent.node_id], comment="one")
    client.wait(ok.id, timeout_s=60)
    agent_cli(agent, "config", "set", "extensions.blocklist", "fleetrun/runShellScript")
    refused = client.send_command(script="exit 3", node_ids=[agent.node_id])
    client.wait(refused.id, timeout_s=60)
    rows = json.loads(agent_cli(agent, "audit", "--json").stdout)
    by_command = {row["command_id"]: row for row in rows}
    assert by_command[ok.id]["outcome"] == "Success" and by_command[ok.id]["exit_code"] == 0
    assert (
        by_command[ok.id]["principal"] == "admin"
        and by_command[ok.id]["document"] == "RunShellScript"
    )
    assert len(by_command[ok.id]["content_hash"]) == 64
    assert by_command[refused.id]["outcome"] == "Refused"
    assert "extensions.blocklist" in by_command[refused.id]["refused_by"]
    text = agent_cli(agent, "audit").stdout
    assert ok.id in text and "refused:" in text


def test_install_service_writes_a_systemd_unit(fleet, tmp_path):
    [agent] = fleet.add_agents(1, start=False)
    printed = agent_cli(agent, "install-service", "--print")
    assert printed.returncode == 0
    unit = printed.stdout
    assert "KillMode=mixed" in unit and "Restart=on-failure" in unit
    assert f"--state-dir {agent.state_dir.resolve()}" in unit and "config.toml" in unit
    written = agent_cli(agent, "install-service", "--unit-dir", str(tmp_path / "units"))
    assert written.returncode == 0 and "systemctl daemon-reload" in written.stdout
    assert (tmp_path / "units" / "fleetrun-agent.service").read_text() == unit


def test_output_printed_while_the_server_is_down_arrives_once(fleet, tmp_path):
    """The agent spools what a script prints while the server is down (and its reconnects
    fail) and sends it, once and in order, when the server is back. The script prints
    its second part only once the server has stopped, so all of it is made during the
    outage: no fixed wait."""
    agent = fleet.add_agent()
    gate, done = tmp_path / "server-down", tmp_path / "printed"
    script = (
        "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); done; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done; "
        "while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); sleep 0.005; done; "
        f"touch {done}"
    )
    command = fleet.client.send_command(script=script, node_ids=[agent.node_id])
    wait_for(
        lambda: "line-39" in fleet.client.get_invocation(command.id, agent.node_id).stdout,
        what="output to flow",
    )
    fleet.server.stop()
    gate.touch()  # the script prints the rest now, into the agent's spool
    wait_for(done.exists, timeout_s=30, what="the script to print while the server is down")
    assert agent.proc.poll() is None  # the agent rode out the outage
    fleet.server.start()
    finished = fleet.client.wait(command.id, timeout_s=60)
    assert finished.status == "Success"
    data = fleet.client.get_output(command.id, agent.node_id).decode()
    assert data == "".join(f"line-{i}\n" for i in range(400))
