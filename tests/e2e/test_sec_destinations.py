"""Server-side requests go only to public addresses unless the operator allows a network:
an output destination or a webhook at a name that leads to a loopback, link-local (cloud
metadata), private or the server's own address is refused when connecting (the address
connected to is the address checked), and the operator's allowance is a server flag. A
literal such address, refused when written, is an API matter:
tests/api/test_sec_destinations.py."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import httpx
import pytest

from tests.harness import Fleet, fleet, wait_for

SECRET = "s" * 24


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _any(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_PUT = do_POST = do_GET = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    """Something internal worth protecting: it counts every request that reaches it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Receiver.hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with no allowance at all (the tests' other servers allow loopback)."""
    f = Fleet(
        tmp_path_factory.mktemp("guarded"), env={"FLEETRUN_ALLOW_DESTINATION_CIDRS": ""}
    ).start()
    try:
        f.add_agents(1, tags={"tier": "app"})
        yield f
    finally:
        f.close()


def _post(fleet, path, body):
    return httpx.post(
        f"{fleet.server.url}{path}",
        json=body,
        headers={"authorization": f"Bearer {fleet.server.token}"},
    )


def test_a_name_that_leads_to_an_internal_address_is_refused_when_connecting(guarded, receiver):
    port, hits = receiver
    client, node = guarded.client, guarded.agents[0].node_id
    # "localhost" is a name: accepted when written, decided on the address it resolves to.
    client.create_rule(
        "leak",
        pattern={"detail-type": ["Run Command State-change Notification"]},
        targets=[{"target": f"webhook:http://localhost:{port}/hook", "secret": SECRET}],
    )
    client.put_run_command(
        node, "sneaky", script="echo secret-output", output_uri=f"http://localhost:{port}/internal"
    )
    done = client.wait_run_command(node, "sneaky", timeout_s=60)
    assert done.instanceView.executionState == "Succeeded"
    view = wait_for(
        lambda: (
            (v := client.get_run_command(node, "sneaky").instanceView).executionMessage.find(
                "not sent to"
            )
            >= 0
            and v
        ),
        what="the destination's refusal in the instance view",
    )
    assert "localhost is 127.0.0.1, a loopback address" in view.executionMessage
    dead = wait_for(
        lambda: client.list_rule_deliveries("leak", state="dead"), what="a refused delivery"
    )
    assert "a loopback address" in (dead[0].last_error or "")
    assert hits == []


def test_an_operator_allowed_network_is_reachable_and_a_bad_one_stops_the_server(
    tmp_path, receiver
):
    port, _ = receiver
    with fleet(
        tmp_path,
        env={"FLEETRUN_ALLOW_DESTINATION_CIDRS": ""},
        extra_args=[
            "--allow-destination-cidr",
            "127.0.0.1/32",
            "--allow-destination-cidr",
            "10.9.0.0/16",
        ],
    ) as guarded_by_flag:
        client = guarded_by_flag.client
        client.create_channel("ok", target=f"webhook:http://127.0.0.1:{port}/hook", secret=SECRET)
        client.create_channel("ok2", target="webhook:http://10.9.8.7/hook", secret=SECRET)
        refused = _post(
            guarded_by_flag,
            "/v1/channels",
            {"name": "no", "target": "webhook:http://10.8.0.1/", "secret": SECRET},
        )
        assert refused.status_code == 400
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "server",
            "--data-dir",
            str(tmp_path / "bad"),
            "--allow-destination-cidr",
            "10.0.0.0/33",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert "'10.0.0.0/33' is not a network" in bad.stderr and "Traceback" not in bad.stderr
