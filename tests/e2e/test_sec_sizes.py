"""Size limits, all derived from the agent channel's frame limit: a script over its limit
and a request body over its limit (declared or chunked, on every route) are refused with
413 and a sentence, and nothing is stored; an invocation whose frame would still be too
large for the agent ends Undeliverable with a message, and the node keeps working."""

from __future__ import annotations

import httpx
import pytest

from fleetrun.core import protocol
from tests.harness import wait_for

MIB = 1024 * 1024


def _headers(fleet):
    return {"authorization": f"Bearer {fleet.server.token}", "content-type": "application/json"}


def _db_bytes(fleet) -> int | None:
    if fleet.server.db is None or fleet.server.db.kind != "sqlite":
        return None
    path = fleet.server.data_dir / "fleetrun.db"
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _assert_refused(answer: httpx.Response, *words: str) -> None:
    assert answer.status_code == 413, answer.text[:300]
    error = answer.json()["error"]
    assert error["type"] == "PayloadTooLarge"
    for word in words:
        assert word in error["message"], error["message"]
    assert "Traceback" not in error["message"]


def test_the_limits_derive_from_the_frame_limit():
    assert protocol.MAX_FRAME_BYTES == 16 * MIB
    assert protocol.MAX_SCRIPT_BYTES == protocol.MAX_FRAME_BYTES // 4
    assert protocol.MAX_REQUEST_BYTES == protocol.MAX_FRAME_BYTES // 2


@pytest.fixture
def node_fleet(fleet):
    fleet.add_agents(1, tags={"env": "size"})
    return fleet


def test_a_script_over_its_limit_is_refused_with_413_and_nothing_is_stored(node_fleet):
    fleet = node_fleet
    node = fleet.agents[0].node_id
    script = "echo x\n" * (5 * MIB // 7)  # 5 MiB: under the body limit, over the script's
    put = httpx.put(
        f"{fleet.server.url}/v1/nodes/{node}/run-commands/big",
        json={"source": {"script": script}},
        headers=_headers(fleet),
        timeout=60,
    )
    _assert_refused(put, "run command's script", "over the 4.0 MiB")
    command = httpx.post(
        f"{fleet.server.url}/v1/commands",
        json={
            "parameters": {"commands": [script]},
            "targets": [{"key": "NodeIds", "values": [node]}],
        },
        headers=_headers(fleet),
        timeout=60,
    )
    _assert_refused(command, "command's script", "over the 4.0 MiB")
    assert fleet.client.list_run_commands(node) == []
    assert fleet.client.list_commands() == []


def test_a_body_over_the_limit_is_refused_on_every_route_declared_or_chunked(node_fleet):
    fleet = node_fleet
    node = fleet.agents[0].node_id
    before = _db_bytes(fleet)
    body = b'{"source": {"script": "' + b"x" * (20 * MIB) + b'"}}'
    url = f"{fleet.server.url}/v1/nodes/{node}/run-commands/huge"
    declared = httpx.put(url, content=body, headers=_headers(fleet), timeout=60)
    _assert_refused(declared, "(20.0 MiB)", "over the 8.0 MiB")

    def chunks():
        for start in range(0, len(body), MIB):
            yield body[start : start + MIB]

    chunked = httpx.put(url, content=chunks(), headers=_headers(fleet), timeout=60)
    assert "content-length" not in chunked.request.headers  # sent chunked, no length
    _assert_refused(chunked, "over the 8.0 MiB")
    # Any route, authenticated or not.
    other = httpx.post(f"{fleet.server.url}/v1/documents", content=b"x" * (9 * MIB), timeout=60)
    _assert_refused(other, "over the 8.0 MiB")
    assert fleet.client.list_run_commands(node) == []
    after = _db_bytes(fleet)
    if before is not None and after is not None:
        assert after - before < 2 * MIB
    # The server goes on as before.
    assert fleet.client.put_run_command(node, "small", script="echo ok").name == "small"


TWICE = """
description: Runs its script twice (so the parameter travels to the node three times)
parameters:
  commands: {type: String, description: the script}
mainSteps:
  - name: first
    action: runShellScript
    inputs:
      runCommand: "{{ commands }}"
  - name: second
    action: runShellScript
    inputs:
      runCommand: "{{ commands }}"
"""


def test_an_invocation_too_large_for_the_agent_channel_ends_undeliverable_and_the_node_goes_on(
    node_fleet,
):
    fleet = node_fleet
    client = fleet.client
    node = fleet.agents[0].node_id
    client.create_document("twice", TWICE)
    # 1.25 MiB of a character JSON writes in 6 bytes: a 7.5 MiB request, 2.5 MiB of
    # script, but an invoke frame of about 22 MiB (the script twice, the parameter once).
    script = "\x01" * (5 * MIB // 4)
    command = client.send_command(
        document="twice", parameters={"commands": [script]}, node_ids=[node]
    )
    done = client.wait(command.id, timeout_s=60)
    [inv] = client.list_invocations(command.id)
    assert (inv.status, inv.status_detail) == ("Undeliverable", "TooLarge")
    assert "over the 16.0 MiB the agent channel carries" in (inv.message or "")
    assert done.status == "Failed"
    # The node was never sent what it would refuse: the next command runs at once.
    after = client.send_command(script="echo still-here", node_ids=[node])
    finished = client.wait(after.id, timeout_s=30)
    assert finished.status == "Success"
    assert client.get_output(after.id, node) == b"still-here\n"
    assert wait_for(lambda: fleet.ping_status(fleet.agents[0]) == "Online", what="online")
