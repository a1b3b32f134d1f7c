"""Replicas on one PostgreSQL database and one S3 output store (a real S3-compatible
server, moto): an agent whose replica is killed in the middle of a run carries on
through the other, and every replica then serves the whole output byte-exact, with
ranges, whichever replica stored which chunk. /readyz reports the store. A run
command's output destination receives every byte once, although every replica could
read all of it: only the leader sends."""

from __future__ import annotations

import http.server
import os
import re
import threading
import time

import httpx
import pytest

from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
S3_ENV = {
    "FLEETRUN_S3_ACCESS_KEY_ID": "AKIDFLEETRUNTEST",
    "FLEETRUN_S3_SECRET_ACCESS_KEY": "s3-secret-key-not-logged",
    "FLEETRUN_OUTPUT_STORE": "s3://logs/fleet",
    "FLEETRUN_RATE_LIMIT_PER_S": "0",
}
# 60 lines of 100 bytes, a tenth of a second apart: the replica dies in the middle.
SCRIPT = "for i in $(seq 1 60); do printf 'line %03d %090d\\n' $i $i; sleep 0.1; done"
EXPECTED = b"".join(b"line %03d %090d\n" % (i, i) for i in range(1, 61))


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_output_that_moved_between_replicas_is_served_whole_by_every_replica(tmp_path, s3):
    env = {**KEY, **S3_ENV, "FLEETRUN_S3_ENDPOINT_URL": s3}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    through_b = None
    try:
        second.start()
        activation = fleet.client.create_activation(registration_limit=1)
        agent = AgentProcess(
            fleet.server, tmp_path / "agent", "node01", servers=[fleet.server.url, second.url]
        )
        fleet.agents.append(agent)
        agent.register(activation.id, activation.code)
        agent.start()
        fleet.wait_online([agent])
        node = agent.node_id
        command = fleet.client.send_command(script=SCRIPT, node_ids=[node])
        wait_for(
            lambda: b"line 010" in fleet.client.get_output(command.id, node),
            what="the first lines stored through the first replica",
        )
        fleet.server.kill()  # kill -9, in the middle of the run
        through_b = second.client(fleet.server.token)
        done = through_b.wait(command.id, timeout_s=90)
        assert done.status == "Success"
        assert through_b.get_output(command.id, node) == EXPECTED
        assert through_b.get_output(command.id, node, start=950, end=2050) == EXPECTED[950:2050]

        fleet.server.start()  # the first replica again, on its empty disk
        assert fleet.client.get_output(command.id, node) == EXPECTED
        assert not (fleet.server.data_dir / "output").exists() or not any(
            (fleet.server.data_dir / "output").rglob("*.stdout")
        )  # nothing of it on the replicas' disks
        for replica in (fleet.server, second):
            ready = httpx.get(f"{replica.url}/readyz", verify=False)
            assert ready.status_code == 200, ready.text
        assert "s3-secret-key-not-logged" not in fleet.logs()
    finally:
        if through_b is not None:
            through_b.close()
        second.stop()
        fleet.close()


class _Destination(http.server.BaseHTTPRequestHandler):
    """Keeps every chunk PUT to it: (start, bytes)."""

    chunks: list[tuple[int, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        match = re.fullmatch(r"bytes (\d+)-(\d+)/\*", self.headers["content-range"])
        if match:
            self.chunks.append((int(match.group(1)), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_an_output_destination_receives_each_byte_once_from_two_replicas(tmp_path, s3):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Destination)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/out.txt"
    env = {**KEY, **S3_ENV, "FLEETRUN_S3_ENDPOINT_URL": s3}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    try:
        second.start()
        (agent,) = fleet.add_agents(1)
        client, node = fleet.client, agent.node_id
        client.put_run_command(node, "sent-once", script=SCRIPT, output_uri=url)
        done = client.wait_run_command(node, "sent-once", timeout_s=90)
        assert done.instanceView.executionState == "Succeeded", done.instanceView
        wait_for(
            lambda: sum(len(b) for _, b in _Destination.chunks) >= len(EXPECTED),
            what="the whole output at the destination",
        )
        time.sleep(3)  # three passes more of either replica: nothing more is sent
    finally:
        second.stop()
        fleet.close()
        receiver.shutdown()
        receiver.server_close()
    starts = [start for start, _ in _Destination.chunks]
    assert starts == sorted(set(starts))  # in order, none sent twice
    assert b"".join(b for _, b in _Destination.chunks) == EXPECTED
