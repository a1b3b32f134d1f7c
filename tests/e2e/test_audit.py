"""The audit log where an agent is needed: its sessions, key rotations and refused
handshakes recorded. (Requests, append-only storage, verification, export and the rate
limit are in tests/api/test_audit.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import Fleet, wait_for


@pytest.fixture(scope="module")
def audit_fleet(tmp_path_factory):
    """One server for the module: each test enrolls a node of its own and counts only the
    records about that node."""
    f = Fleet(tmp_path_factory.mktemp("audit")).start()
    try:
        yield f
    finally:
        f.close()


def test_agent_sessions_are_recorded(audit_fleet):
    agent = audit_fleet.add_agent()
    agent.stop()
    wait_for(lambda: audit_fleet.ping_status(agent) == "ConnectionLost", what="the node to go")
    resource = f"frn:fleetrun:node/{agent.node_id}"

    def sessions():
        found = audit_fleet.client.list_audit_records(limit=1000)
        mine = [r for r in found if r.kind == "agent" and r.resource == resource]
        return mine if len(mine) >= 2 else None

    connect, disconnect = sorted(
        wait_for(sessions, what="both session records"), key=lambda r: r.seq
    )
    assert (connect.action, connect.resource, connect.decision) == (
        "agent:Connect",
        resource,
        "allow",
    )
    assert disconnect.action == "agent:Disconnect" and disconnect.resource == resource
    assert connect.detail["session_id"] == disconnect.detail["session_id"]
    assert connect.source_ip == "127.0.0.1" and connect.detail["agent_version"]
    [register] = [
        r
        for r in audit_fleet.client.list_audit_records(action="agent:Register", limit=1000)
        if r.detail.get("node_id") == agent.node_id
    ]
    assert (register.principal, register.status) == (None, 201)
    assert register.detail["node_id"] == agent.node_id


def test_key_rotations_and_refused_handshakes_are_recorded(audit_fleet):
    agent = audit_fleet.add_agent()
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
        found = audit_fleet.client.list_audit_records(limit=1000)
        return [
            r
            for r in found
            if r.action == "agent:Connect" and r.decision == "deny" and r.resource == resource
        ]

    denied = wait_for(refused, timeout_s=60, what="a refused handshake on record")[0]
    assert denied.resource == resource and denied.detail["reason"] == "bad signature"
    [rotation] = [
        r
        for r in audit_fleet.client.list_audit_records(action="agent:RotateKey", limit=1000)
        if r.resource == resource
    ]
    assert (rotation.resource, rotation.decision) == (resource, "allow")
    agent.stop()
