"""Nothing lost, nothing run twice: restarts, kills, frozen processes, duplicates."""

from __future__ import annotations

import base64
import json
import signal
import time

import pytest
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from fleetrun.core import protocol
from tests.harness import Fleet, wait_for, wait_for_pid


def test_the_agent_reconnects_by_itself_after_the_server_restarts(fleet):
    agent = fleet.add_agent()
    fleet.server.restart()
    fleet.wait_online([agent], timeout_s=30)
    command = fleet.client.send_command(script="echo back", node_ids=[agent.node_id])
    assert fleet.client.wait(command.id, timeout_s=30).status == "Success"


def test_a_killed_agent_shows_connection_lost_within_seconds_and_online_again(fleet):
    agent = fleet.add_agent()
    agent.kill()
    started = time.monotonic()
    wait_for(
        lambda: fleet.ping_status(agent) == "ConnectionLost", timeout_s=10, what="ConnectionLost"
    )
    assert time.monotonic() - started < 8
    agent.start()
    fleet.wait_online([agent], timeout_s=30)


def test_a_frozen_agent_is_marked_lost_by_the_heartbeat(fleet):
    agent = fleet.add_agent()
    agent.proc.send_signal(signal.SIGSTOP)  # the socket stays open, nothing answers
    try:
        wait_for(
            lambda: fleet.ping_status(agent) == "ConnectionLost",
            timeout_s=15,
            what="ConnectionLost of a frozen agent",
        )
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    fleet.wait_online([agent], timeout_s=30)


def test_output_streamed_across_a_server_restart_arrives_once_in_order(fleet):
    agent = fleet.add_agent()
    script = "i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"
    command = fleet.client.send_command(script=script, node_ids=[agent.node_id])
    wait_for(
        lambda: "line-5" in fleet.client.get_invocation(command.id, agent.node_id).stdout,
        what="output to start",
    )
    fleet.server.restart()
    done = fleet.client.wait(command.id, timeout_s=60)
    assert done.status == "Success"
    data = fleet.client.get_output(command.id, agent.node_id).decode()
    assert data == "".join(f"line-{i}\n" for i in range(60))


def test_an_agent_killed_mid_run_never_runs_the_script_again(fleet, tmp_path):
    agent = fleet.add_agent()
    marker = tmp_path / "runs"
    pidfile = tmp_path / "pid"
    script = f"echo run >> {marker}; echo $$ > {pidfile}; sleep 300"
    command = fleet.client.send_command(script=script, node_ids=[agent.node_id])
    script_pid = wait_for_pid(pidfile)
    agent.kill()  # SIGKILL: no chance to clean up
    agent.start()
    done = fleet.client.wait(command.id, timeout_s=60)
    inv = fleet.client.get_invocation(command.id, agent.node_id)
    assert (done.status, inv.status, inv.status_detail) == ("Failed", "Failed", "AgentRestarted")
    assert "restarted" in inv.message
    assert marker.read_text() == "run\n"
    wait_for(lambda: not _alive(script_pid), timeout_s=10, what="the orphaned script to be stopped")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_repeated_deliveries_run_each_script_once(tmp_path):
    # The server re-sends unacknowledged invokes every 0.2 s; a frozen agent piles them up.
    f = Fleet(
        tmp_path, env={"FLEETRUN_INVOKE_RESEND_S": "0.2", "FLEETRUN_HEARTBEAT_S": "5"}
    ).start()
    try:
        agent = f.add_agent()
        marker = tmp_path / "runs"
        agent.proc.send_signal(signal.SIGSTOP)
        commands = [
            f.client.send_command(script=f"echo {n} >> {marker}", node_ids=[agent.node_id])
            for n in range(5)
        ]
        time.sleep(1.5)
        agent.proc.send_signal(signal.SIGCONT)
        for command in commands:
            assert f.client.wait(command.id, timeout_s=60).status == "Success"
        assert sorted(marker.read_text().split()) == ["0", "1", "2", "3", "4"]
        assert "delivered again" in agent.log_path.read_text()
    finally:
        f.close()


def _hello(agent, nonce: str) -> str:
    key = serialization.load_pem_private_key((agent.state_dir / "key.pem").read_bytes(), None)
    node_id = json.loads((agent.state_dir / "identity.json").read_text())["node_id"]
    time_ms = int(time.time() * 1000)
    signature = base64.b64encode(key.sign(protocol.hello_message(nonce, node_id, time_ms))).decode()
    return protocol.dump(
        protocol.Hello(node_id=node_id, time_ms=time_ms, signature=signature, agent_version="test")
    )


def _ws(fleet):
    return connect(fleet.server.url.replace("http", "ws") + "/v1/agent/connect", open_timeout=10)


def test_a_replayed_hello_is_refused(fleet):
    agent = fleet.add_agents(1, start=False)[0]
    with _ws(fleet) as ws:
        challenge = protocol.parse(ws.recv(timeout=10))
        hello = _hello(agent, challenge.nonce)
        ws.send(hello)
        assert isinstance(protocol.parse(ws.recv(timeout=10)), protocol.Welcome)
    with _ws(fleet) as ws:
        ws.recv(timeout=10)  # a fresh challenge, which the old signature does not cover
        ws.send(hello)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == protocol.CLOSE_AUTH_FAILED


def test_an_unknown_node_is_told_to_register_again(fleet):
    agent = fleet.add_agents(1, start=False)[0]
    with _ws(fleet) as ws:
        challenge = protocol.parse(ws.recv(timeout=10))
        hello = json.loads(_hello(agent, challenge.nonce))
        hello["node_id"] = "n-00000000000000000"
        ws.send(json.dumps(hello))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == protocol.CLOSE_NODE_UNKNOWN
