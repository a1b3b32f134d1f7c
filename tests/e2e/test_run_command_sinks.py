"""outputUri / errorUri: the server appends each run's streams to an http(s) destination
(a loopback server here) as they come; a failing destination is reported, not fatal."""

from __future__ import annotations

import http.server
import re
import threading

import boto3
import pytest

from fleetrun.core.errors import ValidationError
from tests.harness import Fleet, wait_for


class _Sink(http.server.BaseHTTPRequestHandler):
    store: dict[str, bytearray] = {}
    complete: dict[str, int] = {}
    refuse: set[str] = set()

    def do_PUT(self) -> None:
        path = self.path.split("?")[0]
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if path in self.refuse:
            self.send_response(500)
            self.end_headers()
            return
        match = re.fullmatch(r"bytes (\d+)-(\d+)/\*", self.headers["content-range"])
        if match:
            start = int(match.group(1))
            data = self.store.setdefault(path, bytearray()) if start else bytearray()
            assert len(data) == start, (path, len(data), start)  # appended in order
            data += body
            self.store[path] = data
            self.complete.pop(path, None)
        else:
            total = int(self.headers["content-range"].rsplit("/", 1)[1])
            self.store.setdefault(path, bytearray())
            self.complete[path] = total
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sink():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Sink
    finally:
        server.shutdown()
        server.server_close()


def test_streams_are_appended_to_the_destinations_while_they_run(shared_fleet, sink):
    base, handler = sink
    client, node = shared_fleet.client, shared_fleet.agents[0].node_id
    script = (
        "i=0; while [ $i -lt 3000 ]; do printf 'line-%05d\\n' $i; i=$((i+1)); done; "
        "echo oops >&2; sleep 3; echo end"
    )
    client.put_run_command(
        node,
        "sinks",
        script=script,
        output_uri=f"{base}/out.txt?sig=secret-sig",
        error_uri=f"{base}/err.txt",
    )
    wait_for(
        lambda: len(handler.store.get("/out.txt", b"")) >= 3000 * 11,
        what="output to reach the destination while the script runs",
    )
    assert client.get_run_command(node, "sinks").instanceView.executionState == "Running"
    done = client.wait_run_command(node, "sinks", timeout_s=60)
    assert done.instanceView.executionState == "Succeeded"
    assert done.outputUri == f"{base}/out.txt?<redacted>"  # the signature is write-only
    expected = "".join(f"line-{i:05d}\n" for i in range(3000)) + "end\n"
    wait_for(lambda: "/out.txt" in handler.complete, what="the end of stdout")
    assert handler.store["/out.txt"].decode() == expected
    assert handler.complete["/out.txt"] == len(expected)
    wait_for(lambda: "/err.txt" in handler.complete, what="the end of stderr")
    assert handler.store["/err.txt"] == b"oops\n"
    # A new run replaces what the destination had.
    client.put_run_command(
        node, "sinks", script="echo second", output_uri=f"{base}/out.txt?sig=secret-sig"
    )
    client.wait_run_command(node, "sinks", timeout_s=60)
    wait_for(lambda: handler.complete.get("/out.txt") == 7, what="the second run's stdout")
    assert handler.store["/out.txt"] == b"second\n"
    client.delete_run_command(node, "sinks")


def test_a_failing_destination_is_reported_without_failing_the_script(shared_fleet, sink):
    base, handler = sink
    handler.refuse.add("/broken.txt")
    client, node = shared_fleet.client, shared_fleet.agents[0].node_id
    client.put_run_command(node, "broken", script="echo fine", output_uri=f"{base}/broken.txt")
    wait_for(
        lambda: "refused" in client.get_run_command(node, "broken").instanceView.executionMessage,
        what="the failure to be reported",
    )
    view = client.get_run_command(node, "broken").instanceView
    assert view.executionState == "Succeeded" and view.output == "fine\n"
    assert "outputUri" in view.executionMessage and "HTTP 500" in view.executionMessage
    client.delete_run_command(node, "broken")


def test_s3_destinations_get_the_whole_streams_signed_with_the_servers_credentials(tmp_path, s3):
    env = {
        "FLEETRUN_S3_ENDPOINT_URL": s3,
        "FLEETRUN_S3_ACCESS_KEY_ID": "AKIDFLEETRUNTEST",
        "FLEETRUN_S3_SECRET_ACCESS_KEY": "s3-secret-key-not-logged",
    }
    f = Fleet(tmp_path / "fleet", env=env).start()
    try:
        [agent] = f.add_agents(1)
        client, node = f.client, agent.node_id
        client.put_run_command(
            node,
            "to-s3",
            script="for i in 1 2 3; do echo out-$i; sleep 1; done; echo bad >&2",
            output_uri="s3://logs/runs/a+b=c/out é.txt",  # what a hand-made signer got wrong
            error_uri="s3://logs/runs/err.txt",
        )
        done = client.wait_run_command(node, "to-s3", timeout_s=60)
        assert done.instanceView.executionState == "Succeeded", done.instanceView

        bucket = boto3.client(
            "s3",
            endpoint_url=s3,
            region_name="us-east-1",
            aws_access_key_id=env["FLEETRUN_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["FLEETRUN_S3_SECRET_ACCESS_KEY"],
        )

        def stored(key: str) -> bytes | None:
            try:
                return bytes(bucket.get_object(Bucket="logs", Key=key)["Body"].read())
            except bucket.exceptions.NoSuchKey:
                return None

        wait_for(lambda: stored("runs/a+b=c/out é.txt") == b"out-1\nout-2\nout-3\n", what="stdout")
        wait_for(lambda: stored("runs/err.txt") == b"bad\n", what="stderr")
        assert "s3-secret-key-not-logged" not in f.logs()
        # A bucket that does not exist: reported, the script still succeeds.
        client.put_run_command(node, "to-s3", script="echo x", output_uri="s3://nobucket/x")
        wait_for(
            lambda: (
                "refused" in client.get_run_command(node, "to-s3").instanceView.executionMessage
            ),
            what="the refusal to be reported",
        )
        assert client.get_run_command(node, "to-s3").instanceView.executionState == "Succeeded"
    finally:
        f.close()


def test_an_s3_destination_needs_server_credentials(shared_fleet):
    with pytest.raises(ValidationError, match="no S3 credentials"):
        shared_fleet.client.put_run_command(
            shared_fleet.agents[0].node_id, "s3", script="true", output_uri="s3://b/k"
        )
