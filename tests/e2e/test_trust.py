"""Transport and identity: TLS with a pinned CA, key rotation, time-bound challenges,
one agent per state directory."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from fleetrun.core import protocol
from tests.harness import AgentProcess, Fleet, wait_for


def register(server, state_dir, activation, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "register",
            "--state-dir",
            str(state_dir),
            "--server",
            server.url,
            "--activation-id",
            activation.id,
            "--activation-code",
            activation.code,
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def tls_fleet(tmp_path_factory):
    """One TLS server for the module: each test registers agents of its own, in its
    own directories, with an activation of its own."""
    f = Fleet(tmp_path_factory.mktemp("tls"), tls=True).start()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def plain_fleet(tmp_path_factory):
    """One plain server for the module: each test enrolls a node of its own and touches
    only that node and its agent."""
    f = Fleet(tmp_path_factory.mktemp("plain")).start()
    try:
        yield f
    finally:
        f.close()


def test_agents_pin_the_server_ca_by_fingerprint_and_run_over_tls(tls_fleet, tmp_path):
    printed = re.search(r"fingerprint sha256:([0-9a-f]{64})", tls_fleet.server.log_path.read_text())
    assert printed, "the server prints its CA fingerprint at start"
    activation = tls_fleet.client.create_activation(registration_limit=3)
    wrong = register(
        tls_fleet.server, tmp_path / "wrong", activation, "--ca-fingerprint", "ab" * 32
    )
    assert wrong.returncode == 1 and "do not trust this server" in wrong.stderr
    done = register(
        tls_fleet.server,
        tmp_path / "pinned",
        activation,
        "--ca-fingerprint",
        f"sha256:{printed.group(1)}",
    )
    assert done.returncode == 0, done.stderr
    agent = AgentProcess(
        tls_fleet.server, tmp_path / "pinned", "pinned", node_id=json.loads(done.stdout)["node_id"]
    )
    tls_fleet.agents.append(agent)
    agent.start()
    tls_fleet.wait_online([agent])
    command = tls_fleet.client.send_command(script="echo over tls", node_ids=[agent.node_id])
    assert tls_fleet.client.wait(command.id, timeout_s=60).status == "Success"
    assert tls_fleet.client.get_invocation(command.id, agent.node_id).stdout == "over tls\n"


def test_a_certificate_from_another_ca_is_refused(tls_fleet, tmp_path):
    other = Fleet(tmp_path / "other", tls=True).start()  # a second server, with its own CA
    try:
        activation = tls_fleet.client.create_activation()
        done = register(
            tls_fleet.server, tmp_path / "a", activation, "--ca-file", str(other.server.ca_file)
        )
        assert done.returncode == 1 and "certificate is not trusted" in done.stderr
        assert not (tmp_path / "a" / "identity.json").exists()
    finally:
        other.close()


def test_plain_http_is_refused_off_loopback_unless_insecure(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "register",
            "--state-dir",
            str(tmp_path / "a"),
            "--server",
            "http://fleet.example.invalid:8470",
            "--activation-id",
            "x",
            "--activation-code",
            "y",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "plain HTTP to a host that is not this machine" in done.stderr


def _hello(agent, nonce, key_path=None, time_ms=None):
    key = serialization.load_pem_private_key(
        (key_path or agent.state_dir / "key.pem").read_bytes(), None
    )
    time_ms = time_ms if time_ms is not None else int(time.time() * 1000)
    message = protocol.hello_message(nonce, agent.node_id, time_ms)
    signature = base64.b64encode(key.sign(message)).decode()
    return protocol.dump(
        protocol.Hello(
            node_id=agent.node_id, time_ms=time_ms, signature=signature, agent_version="t"
        )
    )


def _try_hello(fleet, agent, **kw):
    with connect(
        fleet.server.url.replace("http", "ws") + "/v1/agent/connect", open_timeout=10
    ) as ws:
        challenge = protocol.parse(ws.recv(timeout=10))
        ws.send(_hello(agent, challenge.nonce, **kw))
        try:
            return protocol.parse(ws.recv(timeout=10))
        except ConnectionClosed as closed:
            return closed.rcvd.code


def test_a_stale_signed_challenge_is_refused(plain_fleet):
    [agent] = plain_fleet.add_agents(1, start=False)
    assert (
        _try_hello(plain_fleet, agent, time_ms=int(time.time() * 1000) - 10 * 60 * 1000)
        == protocol.CLOSE_AUTH_FAILED
    )
    assert isinstance(_try_hello(plain_fleet, agent), protocol.Welcome)


def test_rotate_key_with_the_agent_running(plain_fleet, tmp_path):
    agent = plain_fleet.add_agent()
    old = (agent.state_dir / "key.pem").read_bytes()
    (tmp_path / "old.pem").write_bytes(old)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "rotate-key",
            "--state-dir",
            str(agent.state_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (agent.state_dir / "key.pem").read_bytes() != old
    plain_fleet.wait_online([agent])
    command = plain_fleet.client.send_command(script="echo rotated", node_ids=[agent.node_id])
    assert plain_fleet.client.wait(command.id, timeout_s=60).status == "Success"
    agent.stop()
    assert (
        _try_hello(plain_fleet, agent, key_path=tmp_path / "old.pem") == protocol.CLOSE_AUTH_FAILED
    )
    assert isinstance(_try_hello(plain_fleet, agent), protocol.Welcome)


def test_rotate_key_with_no_agent_running(plain_fleet):
    [agent] = plain_fleet.add_agents(1, start=False)
    old = (agent.state_dir / "key.pem").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "rotate-key", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "old key no longer works" in done.stdout
    assert (agent.state_dir / "key.pem").read_bytes() != old
    agent.start()
    plain_fleet.wait_online([agent])


def test_one_agent_per_state_directory(plain_fleet):
    agent = plain_fleet.add_agent()
    second = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "run", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1 and "Another fleetrun-agent is running" in second.stderr
    wait_for(lambda: plain_fleet.ping_status(agent) == "Online", what="the first agent unharmed")
