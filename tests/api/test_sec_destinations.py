"""Server-side requests go only to public addresses unless the operator allows a network:
an output destination or a webhook at a literal loopback, link-local (cloud metadata),
private or unspecified address is refused when written (400, nothing stored). What a
name resolves to is decided when connecting, by a server process sending for an agent:
tests/e2e/test_sec_destinations.py."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.inprocess import App

SECRET = "s" * 24
INTERNAL = [
    ("http://127.0.0.1:{port}/internal/admin", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
    ("http://10.1.2.3/x", "a private address"),
    ("http://192.168.1.1:8080/x", "a private address"),
    ("http://[::1]:{port}/x", "a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/x", "a loopback address"),
    ("https://0.0.0.0/x", "the unspecified address"),
    ("http://100.64.0.1/x", "not a public address"),
]


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
def receiver() -> Iterator[tuple[int, list[str]]]:
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
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """An app with no allowance at all (the tests' other apps allow loopback)."""
    a = App(tmp_path_factory.mktemp("guarded"), allow_destination_cidrs="").start()
    try:
        a.enrol(1, tags={"tier": "app"})
        a.client.create_group("apps", tags={"tier": "app"})
        yield a
    finally:
        a.close()


def _put(app: App, path: str, body: object) -> httpx.Response:
    assert app.http is not None
    return app.http.put(path, json=body, headers={"authorization": f"Bearer {app.token}"})


def _post(app: App, path: str, body: object) -> httpx.Response:
    assert app.http is not None
    return app.http.post(path, json=body, headers={"authorization": f"Bearer {app.token}"})


@pytest.mark.parametrize(("template", "reason"), INTERNAL)
def test_a_literal_internal_address_is_refused_when_written_and_nothing_is_stored(
    guarded, receiver, template, reason
):
    port, hits = receiver
    url = template.format(port=port)
    node = guarded.nodes[0].node_id
    answers = [
        _put(
            guarded,
            f"/v1/nodes/{node}/run-commands/out",
            {"source": {"script": "true"}, "outputUri": url},
        ),
        _put(
            guarded,
            f"/v1/nodes/{node}/run-commands/err",
            {"source": {"script": "true"}, "errorUri": url},
        ),
        _put(
            guarded,
            "/v1/groups/apps/run-commands/grp",
            {"source": {"script": "true"}, "outputUri": url},
        ),
        _post(
            guarded,
            "/v1/rules",
            {
                "name": "hook",
                "pattern": {"source": ["fleetrun"]},
                "targets": [{"target": f"webhook:{url}"}],
            },
        ),
        _post(
            guarded,
            "/v1/channels",
            {"name": "chan", "target": f"webhook:{url}", "secret": SECRET},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert reason in message and "--allow-destination-cidr" in message, message
        assert "Traceback" not in message
    client = guarded.client
    assert client.list_run_commands(node) == []
    assert client.list_group_run_commands("apps") == []
    assert client.list_rules() == [] and client.list_channels() == []
    assert hits == []
