"""Output and listings at scale: 100 MB on one stream, downloads, a thousand nodes."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.harness import wait_for


def test_a_hundred_megabytes_on_one_stream_arrive_complete_and_in_order(shared_fleet):
    client = shared_fleet.client
    node = shared_fleet.agents[2].node_id
    script = (
        'python3 -c "import hashlib,sys\n'
        "out = sys.stdout.buffer\n"
        "for i in range(100 * 1024):\n"
        "    out.write(i.to_bytes(4, 'big') * 256)\n\""
    )
    command = client.send_command(script=script, node_ids=[node], timeout_s=600)
    assert client.wait(command.id, timeout_s=600).status == "Success"
    digest = hashlib.sha256()
    size = 0
    for chunk in client.iter_output(command.id, node):
        digest.update(chunk)
        size += len(chunk)
    expected = hashlib.sha256()
    for i in range(100 * 1024):
        expected.update(i.to_bytes(4, "big") * 256)
    assert size == 100 * 1024 * 1024
    assert digest.hexdigest() == expected.hexdigest()


def test_download_writes_one_file_per_node_and_stream(shared_fleet, tmp_path):
    client = shared_fleet.client
    command = client.send_command(
        script='echo "out $FLEETRUN_NODE_ID"; echo err >&2', all_nodes=True
    )
    client.wait(command.id, timeout_s=60)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "invocations",
            "download",
            command.id,
            "--dir",
            str(tmp_path / "out"),
            "--server",
            shared_fleet.server.url,
            "--token",
            shared_fleet.server.token,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 6
    for agent in shared_fleet.agents:
        assert (
            tmp_path / "out" / f"{agent.node_id}.stdout"
        ).read_text() == f"out {agent.node_id}\n"
        assert (tmp_path / "out" / f"{agent.node_id}.stderr").read_text() == "err\n"


def _register_many(server, count: int) -> list[str]:
    with server.client() as client:
        activation = client.create_activation(registration_limit=count, tags={"scale": "k"})
    ids = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for n in range(count):
            key = (
                Ed25519PrivateKey.generate()
                .public_key()
                .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            )
            answer = http.post(
                "/v1/agent/register",
                json={
                    "activation_id": activation.id,
                    "activation_code": activation.code,
                    "public_key": base64.b64encode(key).decode(),
                    "name": f"bulk{n:04d}",
                    "agent_version": "0",
                    "facts": {},
                    "tags": {},
                },
            )
            answer.raise_for_status()
            ids.append(answer.json()["node_id"])
    return ids


def test_a_command_to_a_thousand_nodes_lists_page_by_page_without_output(fleet):
    ids = _register_many(fleet.server, 1000)
    client = fleet.client
    command = client.send_command(script="echo hi", tags={"scale": "k"}, max_concurrency="100%")
    assert command.target_count == 1000
    shown = client.get_command(command.id)
    assert shown.target_count == 1000 and "steps" not in shown.model_dump()
    seen, cursor, pages = [], None, 0
    while True:
        page = client.list_invocations_page(command_id=command.id, limit=300, cursor=cursor)
        seen += [i.node_id for i in page.items]
        assert all(i.stdout == "" and i.steps == [] for i in page.items)
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 4 and sorted(seen) == sorted(ids)
    # no agent runs: every node is offline, so every invocation waits as Delayed
    wait_for(
        lambda: (
            len(
                client.list_invocations_page(
                    command_id=command.id, status="Delayed", limit=1000
                ).items
            )
            == 1000
        ),
        what="all 1000 invocations Delayed",
    )
    filtered = client.list_commands_page(node_id=ids[5])
    assert [c.id for c in filtered.items] == [command.id]
    assert client.list_commands_page(tags={"scale": "k"}).items[0].id == command.id
