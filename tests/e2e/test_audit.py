"""The audit log where an agent is needed: its sessions, key rotations and refused
handshakes recorded. (Requests, append-only storage, verification, export and the rate
limit are in tests/api/test_audit.py.)"""

from __future__ import annotations

import subprocess
import sys

from tests.harness import wait_for


def test_agent_sessions_are_recorded(fleet):
    agent = fleet.add_agent()
    agent.stop()
    wait_for(lambda: fleet.ping_status(agent) == "ConnectionLost", what="the node to go")

    def sessions():
        found = fleet.client.list_audit_records(limit=1000)
        return (
            [r for r in found if r.kind == "agent"]
            if len([r for r in found if r.kind == "agent"]) >= 2
            else None
        )

    connect, disconnect = sorted(
        wait_for(sessions, what="both session records"), key=lambda r: r.seq
    )
    resource = f"frn:fleetrun:node/{agent.node_id}"
    assert (connect.action, connect.resource, connect.decision) == (
        "agent:Connect",
        resource,
        "allow",
    )
    assert disconnect.action == "agent:Disconnect" and disconnect.resource == resource
    assert connect.detail["session_id"] == disconnect.detail["session_id"]
    assert connect.source_ip == "127.0.0.1" and connect.detail["agent_version"]
    [register] = fleet.client.list_audit_records(action="agent:Register")
    assert (register.principal, register.status) == (None, 201)
    assert register.detail["node_id"] == agent.node_id


def test_key_rotations_and_refused_handshakes_are_recorded(fleet):
    agent = fleet.add_agent()
    old = (agent.state_dir / "key.pem").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "rotate-key", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    agent.stop()
    (agent.state_dir / "key.pem").write_bytes(old)  # a stolen, retired key
    agent.start()
    resource = f"frn:fleetrun:node/{agent.node_id}"

    def refused():
        found = fleet.client.list_audit_records(limit=1000)
        return [r for r in found if r.action == "agent:Connect" and r.decision == "deny"]

    denied = wait_for(refused, timeout_s=60, what="a refused handshake on record")[0]
    assert denied.resource == resource and denied.detail["reason"] == "bad signature"
    [rotation] = fleet.client.list_audit_records(action="agent:RotateKey")
    assert (rotation.resource, rotation.decision) == (resource, "allow")
    agent.stop()
