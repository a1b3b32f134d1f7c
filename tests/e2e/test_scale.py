"""Output at scale: 100 MB on one stream, downloads. (A thousand nodes listed page by
page is in tests/api/test_scale.py.)"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys


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
