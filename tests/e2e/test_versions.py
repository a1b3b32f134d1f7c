"""Versions: the CLI, the server and the agent say theirs and the protocol they speak,
and a server refuses an agent older than the oldest protocol it supports, saying so."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import subprocess
import sys
import threading
import time

import pytest
from websockets.asyncio.client import connect

from fleetrun import __version__
from fleetrun.agent.channel import ws_url
from fleetrun.agent.state import StateDir, sign_b64
from fleetrun.core import protocol
from tests.harness import Fleet, wait_for


@pytest.fixture(scope="module")
def versions_fleet(tmp_path_factory):
    """One server for the module: each test reads, or enrolls a node of its own and looks
    only at that node's records."""
    f = Fleet(tmp_path_factory.mktemp("versions")).start()
    try:
        yield f
    finally:
        f.close()


def _json(*argv: str) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cli_reports_its_own_and_the_servers_versions_and_protocols(versions_fleet: Fleet):
    data = _json(
        sys.executable, "-m", "fleetrun", "version", "--json", "--server", versions_fleet.server.url
    )
    assert data == {
        "cli": __version__,
        "protocol": protocol.PROTOCOL_VERSION,
        "min_protocol": protocol.MIN_PROTOCOL_VERSION,
        "server": {
            "url": versions_fleet.server.url,
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "min_protocol": protocol.MIN_PROTOCOL_VERSION,
        },
    }


def test_without_a_server_the_cli_still_reports_its_own_version():
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun", "version", "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert done.stdout.startswith(f"fleetrun {__version__} (agent protocol ")
    assert "server: not reached (Cannot reach the fleetrun server" in done.stdout
    local = _json(sys.executable, "-m", "fleetrun", "version", "--local", "--json")
    assert local["server"] is None and "server_error" not in local


def test_the_agent_reports_its_version_and_protocol_to_the_operator_and_the_server(
    versions_fleet: Fleet,
):
    data = _json(sys.executable, "-m", "fleetrun.agent", "version", "--json")
    assert data == {"agent": __version__, "protocol": protocol.PROTOCOL_VERSION}
    agent = versions_fleet.add_agent()
    assert versions_fleet.client.get_node(agent.node_id).agent_version == __version__
    [connect_record] = wait_for(
        lambda: [
            r
            for r in versions_fleet.client.list_audit_records(action="agent:Connect", limit=1000)
            if r.resource == f"frn:fleetrun:node/{agent.node_id}"
        ],
        what="the agent's connection on record",
    )
    assert connect_record.detail["agent_version"] == __version__
    assert connect_record.detail["protocol"] == protocol.PROTOCOL_VERSION


async def _hello_with_protocol(state: StateDir, version: int) -> tuple[int | None, str | None]:
    """A registered node's own key and identity, saying it speaks protocol `version`:
    an agent of an older release, as far as the server can tell."""
    identity = state.load_identity()
    async with connect(ws_url(identity.server)) as ws:
        challenge = protocol.parse(await ws.recv())
        assert isinstance(challenge, protocol.Challenge)
        time_ms = int(time.time() * 1000)
        message = protocol.hello_message(challenge.nonce, identity.node_id, time_ms)
        hello = protocol.Hello(
            protocol=version,
            node_id=identity.node_id,
            time_ms=time_ms,
            signature=sign_b64(state.load_key(), message),
            agent_version="0.0.1",
        )
        await ws.send(protocol.dump(hello))
        await ws.wait_closed()
        return ws.close_code, ws.close_reason


def test_an_agent_older_than_the_oldest_protocol_is_refused_with_a_reason(
    versions_fleet: Fleet,
):
    agent = versions_fleet.add_agent(start=False)
    old = protocol.MIN_PROTOCOL_VERSION - 1
    code, reason = asyncio.run(_hello_with_protocol(StateDir(agent.state_dir), old))
    assert code == protocol.CLOSE_PROTOCOL_TOO_OLD
    assert reason == (
        f"agent protocol {old} is older than the oldest this server supports "
        f"({protocol.MIN_PROTOCOL_VERSION}): upgrade the agent"
    )
    [denied] = wait_for(
        lambda: [
            r
            for r in versions_fleet.client.list_audit_records(action="agent:Connect", limit=1000)
            if r.decision == "deny" and r.resource == f"frn:fleetrun:node/{agent.node_id}"
        ],
        what="the refusal on record",
    )
    assert denied.resource == f"frn:fleetrun:node/{agent.node_id}"
    assert denied.detail["reason"] == reason
    # a number of the agent's choosing does not make the reason too long for a close frame
    code, reason = asyncio.run(_hello_with_protocol(StateDir(agent.state_dir), -(10**200)))
    assert code == protocol.CLOSE_PROTOCOL_TOO_OLD
    assert reason.startswith("agent protocol -10000000000 is older") and len(reason) <= 123
    # the node itself is not harmed: the current agent connects
    agent.start()
    versions_fleet.wait_online([agent])


def test_a_server_that_does_not_say_its_version_is_called_older(tmp_path):
    """A server from before GET /version answers it 404 (here: a plain HTTP server)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as old:
        threading.Thread(target=old.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{old.server_address[1]}"
        data = _json(sys.executable, "-m", "fleetrun", "version", "--json", "--server", url)
        old.shutdown()
    assert data["server"] is None
    assert data["server_error"] == f"{url} does not say its version: it is older."
