"""Hostile input over HTTP, against the real app in process: every value out of range
or malformed is a 4xx with one sentence, never a 5xx, and changes nothing."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.core.errors import FleetrunError, NotFoundError, ValidationError
from fleetrun.core.signing import public_key_b64
from fleetrun.sdk import Client
from tests.inprocess import App

TOO_BIG = "99999999999999999999"
BELOW_INT64 = "-9223372036854775809"
NO_COMMAND = "00000000-0000-4000-8000-000000000000"
NO_NODE = "n-00000000000000000"
ONE_STEP = "mainSteps: [{name: s, action: runShellScript, inputs: {runCommand: 'echo hi'}}]"


@pytest.fixture(scope="module")
def server_log() -> Iterator[io.StringIO]:
    """Everything logged (at info and above, as the server logs) while this module's
    tests run, tracebacks included: what a server process would write to its log."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_log: io.StringIO) -> Iterator[App]:
    """The app of its own, no agents: these tests only talk HTTP."""
    app = App(tmp_path_factory.mktemp("sec-input")).start()
    app.client.create_document("sec-doc", ONE_STEP)
    try:
        yield app
    finally:
        app.close()


def _http(app: App) -> httpx.Client:
    assert app.http is not None
    return app.http


def _get(app: App, path: str) -> httpx.Response:
    return _http(app).get(path, headers={"authorization": f"Bearer {app.token}"})


def _assert_sentence(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert message.endswith("."), message
    assert "\n" not in message and "Traceback" not in message
    return str(message)


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/events?after={TOO_BIG}",
        f"/v1/events?after={BELOW_INT64}",
        "/v1/events?after=-1",
        f"/v1/events/stream?after={TOO_BIG}",
        "/v1/events/stream?after=1e20",
        "/v1/commands?since=9999999d",
        "/v1/commands?since=99999999999d",
        "/v1/commands?until=9999-12-31T23:59:59-14:00",
        "/v1/commands?since=0001-01-01T00:00:00%2B14:00",
        "/v1/invocations?since=99999999999d",
        "/v1/events?since=9999999d",
        "/v1/events?since=0001-01-01T00:00:00%2B14:00",
        "/v1/audit?since=0001-01-01T00:00:00%2B14:00",
        "/v1/audit/export?since=9999999d",
        f"/v1/audit?cursor={TOO_BIG}",
        "/v1/audit?cursor=%C2%B2",
        f"/v1/invocations?command={NO_COMMAND}&cursor={TOO_BIG}:x",
        # a time cursor whose time cannot be held in UTC: ["0001-01-01T00:00:00+14:00","x"]
        "/v1/commands?cursor=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwieCJd",
        "/v1/invocations?cursor=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwieCJd",
        "/v1/documents/sec-doc?version=%C2%B2",
        f"/v1/documents/sec-doc?version={TOO_BIG}",
        f"/v1/commands/{NO_COMMAND}?version={TOO_BIG}",
        f"/v1/commands/{NO_COMMAND}/invocations/{NO_NODE}/output?step={TOO_BIG}",
    ],
)
def test_out_of_range_numbers_and_times_are_400_with_a_sentence(server: App, path: str) -> None:
    _assert_sentence(_get(server, path))


def test_a_duration_too_long_says_so(server: App) -> None:
    message = _assert_sentence(_get(server, "/v1/commands?since=9999999d"))
    assert "too long" in message and "since" in message


def test_a_valid_window_still_answers(server: App) -> None:
    """The bounds leave ordinary values alone: a sequence number of 0, a day ago."""
    assert _get(server, "/v1/events?after=0").status_code == 200
    assert _get(server, "/v1/events?since=1d").status_code == 200
    assert _get(server, "/v1/audit?since=2h").status_code == 200
    assert _get(server, "/v1/commands?since=36500d").status_code == 200


def test_the_server_logged_no_failure(server: App, server_log: io.StringIO) -> None:
    """None of the above reached the catch-all handler (a 500 and a traceback)."""
    _get(server, f"/v1/events?after={TOO_BIG}")
    log = server_log.getvalue()
    assert "Traceback" not in log


# -- a body the server cannot read: authenticate first, then say what was wrong ---------

BAD_BODIES = [
    pytest.param(b"{not json", "application/json", id="not-json"),
    pytest.param(b'{"name": "\xff\xfe"}', "application/json", id="not-utf8"),
    pytest.param(b"\xff", None, id="not-utf8-no-type"),
]
BODY_ROUTES = [
    ("POST", "/v1/commands"),
    ("POST", "/v1/groups"),
    ("PUT", "/v1/documents/sec-doc"),
    ("POST", "/v1/tokens"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize(("body", "content_type"), BAD_BODIES)
@pytest.mark.parametrize("token", [None, "frt_wrong"])
def test_an_unreadable_body_without_a_valid_token_is_401(
    server: App, method: str, path: str, body: bytes, content_type: str | None, token: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = _http(server).request(method, path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "AuthenticationError"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_body_that_is_not_utf8_is_told_so(server: App) -> None:
    response = _http(server).post(
        "/v1/groups",
        content=b'{"name": "\xff"}',
        headers={
            "authorization": f"Bearer {server.token}",
            "content-type": "application/json",
        },
    )
    message = _assert_sentence(response)
    assert "UTF-8" in message and "0xff" in message
    assert response.json()["error"]["type"] == "ValidationError"


def test_a_body_that_is_not_json_is_told_so(server: App) -> None:
    response = _http(server).post(
        "/v1/groups",
        content=b"{not json",
        headers={
            "authorization": f"Bearer {server.token}",
            "content-type": "application/json",
        },
    )
    assert "not valid JSON" in _assert_sentence(response)


# -- names and ids in URL paths: one segment each, whatever they contain --------------


def test_a_document_name_cannot_climb_to_a_group(server: App) -> None:
    client = server.client
    client.create_group("victim", tags={"env": "victim"})
    with pytest.raises(NotFoundError):
        client.delete_document("../groups/victim")
    with pytest.raises((NotFoundError, ValidationError)):
        client.delete_document("..%2Fgroups%2Fvictim")
    assert client.get_group("victim").name == "victim"


def test_an_activation_id_cannot_climb_to_a_node(server: App) -> None:
    client = server.client
    [node] = server.enrol(1, prefix="keep")
    with pytest.raises(FleetrunError):
        client.delete_activation(f"../nodes/{node.node_id}")
    assert client.get_node(node.node_id).id == node.node_id


@pytest.mark.parametrize("name", ["..", "."])
def test_a_dot_name_is_never_a_move_in_the_path(server: App, name: str) -> None:
    """The SDK sends "." and ".." escaped, so they reach the route as names (and are
    not found) instead of addressing the listing above."""
    with pytest.raises(NotFoundError):
        server.client.get_group(name)
    with pytest.raises(NotFoundError):
        server.client.delete_policy(name)


def test_an_empty_name_is_refused_before_it_reaches_a_listing(server: App) -> None:
    with pytest.raises(ValidationError, match="empty"):
        server.client.delete_group("")


POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "fleetrun:ListNodes", "Resource": "*"}],
}
CREATES = pytest.mark.parametrize(
    "create",
    [
        lambda c, n: c.create_group(n, tags={"env": "x"}),
        lambda c, n: c.create_principal(n),
        lambda c, n: c.create_policy(n, POLICY),
        lambda c, n: c.create_role(n, ["ReadOnlyAccess"]),
        lambda c, n: c.create_rule(
            n,
            pattern={"source": ["x"]},
            targets=[{"target": "webhook:https://example.com/h", "secret": "s" * 20}],
        ),
        lambda c, n: c.create_channel(n, target="webhook:https://example.com/h", secret="s" * 20),
        lambda c, n: c.create_document(n, ONE_STEP),
        lambda c, n: c.create_activation(name=n),
    ],
    ids=["group", "principal", "policy", "role", "rule", "channel", "document", "activation"],
)


@CREATES
@pytest.mark.parametrize("name", ["..", "a/b", "../groups/victim", "x\n"])
def test_every_create_refuses_a_name_that_is_not_one_path_segment(
    server: App, create: Callable[[Client, str], object], name: str
) -> None:
    with pytest.raises(ValidationError):
        create(server.client, name)


@CREATES
def test_every_create_takes_an_ordinary_name(
    server: App, create: Callable[[Client, str], object], request: pytest.FixtureRequest
) -> None:
    """The refusals above are about the names, not about the rest of the request."""
    create(server.client, "ok-" + request.node.callspec.id)


# -- 16: a node's name is printable text -------------------------------------------------


@pytest.mark.parametrize("name", ["evil\x1b[2J", "two\nlines", "rtl\u202etxt.exe", "a/b", ".."])
def test_registration_refuses_a_name_a_terminal_would_not_show_as_it_is(
    server: App, name: str
) -> None:
    activation = server.client.create_activation()
    key = Ed25519PrivateKey.generate()
    body = {
        "activation_id": activation.id,
        "activation_code": activation.code,
        "public_key": public_key_b64(key),
        "name": name,
        "agent_version": "0.1.0",
    }
    response = _http(server).post("/v1/agent/register", json=body)
    _assert_sentence(response)
    assert "node name" in response.json()["error"]["message"]
    [unchanged] = [a for a in server.client.list_activations() if a.id == activation.id]
    assert unchanged.registrations_count == 0


# -- 12: the audit key, and the signed head ending every export --------------------------


def test_every_export_ends_with_a_head_signed_by_the_key_the_server_serves(
    server: App,
) -> None:
    from fleetrun.core.audit import verify_export

    key = _get(server, "/v1/audit/key").json()
    assert key["algorithm"] == "Ed25519"
    assert _http(server).get("/v1/audit/key").status_code == 401
    lines = [json.loads(line) for line in _get(server, "/v1/audit/export").text.splitlines()]
    head = lines[-1]["head"]
    assert head["seq"] == lines[-2]["seq"] and head["from_seq"] == 1
    assert verify_export(lines, key["public_key"]).ok
