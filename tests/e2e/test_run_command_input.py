"""Run commands: a script from scriptUri (served here on loopback) runs, or fails saying
why. (Bad input is in tests/api/test_run_command_input.py.)"""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from tests.harness import free_port


class _Scripts(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path.split("?")[0], (404, b"no"))
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def scripts():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Scripts.routes
    finally:
        server.shutdown()
        server.server_close()


def test_script_uri_downloads_checks_the_digest_and_says_why_it_failed(shared_fleet, scripts):
    """Reference §4.4 step 5, made explicit: expired, unreachable and mismatching URLs
    each end the run Failed with a message that says which."""
    base, routes = scripts
    client, node = shared_fleet.client, shared_fleet.agents[0].node_id
    script = b'#!/bin/sh\necho "from uri $1 $X"\n'
    routes["/ok.sh"] = (200, script)
    routes["/expired.sh"] = (403, b"<Error>Request has expired</Error>")
    routes["/gone.sh"] = (410, b"gone")
    digest = hashlib.sha256(script).hexdigest()
    client.put_run_command(
        node,
        "uri",
        script_uri=f"{base}/ok.sh?sig=abc&expires=1",
        script_sha256=digest,
        parameters={"X": "x"},
        arguments=["a"],
    )
    done = client.wait_run_command(node, "uri", timeout_s=60)
    assert done.instanceView.executionState == "Succeeded", done.instanceView
    assert done.instanceView.output == "from uri a x\n"
    cases = [
        (f"{base}/ok.sh", "0" * 64, "does not match scriptSha256"),
        (f"{base}/expired.sh", None, "HTTP 403: the link has expired"),
        (f"{base}/gone.sh", None, "HTTP 410: the link has expired"),
        (f"{base}/missing.sh", None, "HTTP 404"),
        (f"http://127.0.0.1:{free_port()}/x.sh", None, "could not be reached"),
    ]
    for uri, sha, phrase in cases:
        client.put_run_command(node, "uri", script_uri=uri, script_sha256=sha)
        failed = client.wait_run_command(node, "uri", timeout_s=60)
        view = failed.instanceView
        assert view.executionState == "Failed", (uri, view)
        assert phrase in view.executionMessage, (uri, view.executionMessage)
    client.delete_run_command(node, "uri")
