"""Hostile input over HTTP, against a real server: every value out of range or
malformed is a 4xx with one sentence, never a 5xx, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import Fleet

TOO_BIG = "99999999999999999999"
BELOW_INT64 = "-9223372036854775809"
NO_COMMAND = "00000000-0000-4000-8000-000000000000"
NO_NODE = "n-00000000000000000"
ONE_STEP = "mainSteps: [{name: s, action: runShellScript, inputs: {runCommand: 'echo hi'}}]"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A server of its own, no agents: these tests only talk HTTP."""
    f = Fleet(tmp_path_factory.mktemp("sec-input")).start()
    f.client.create_document("sec-doc", ONE_STEP)
    try:
        yield f
    finally:
        f.close()


def _get(fleet: Fleet, path: str, **kw: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {fleet.server.token}"}
    return httpx.get(fleet.server.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


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
def test_out_of_range_numbers_and_times_are_400_with_a_sentence(server: Fleet, path: str) -> None:
    _assert_sentence(_get(server, path))


def test_a_duration_too_long_says_so(server: Fleet) -> None:
    message = _assert_sentence(_get(server, "/v1/commands?since=9999999d"))
    assert "too long" in message and "since" in message


def test_a_valid_window_still_answers(server: Fleet) -> None:
    """The bounds leave ordinary values alone: a sequence number of 0, a day ago."""
    assert _get(server, "/v1/events?after=0").status_code == 200
    assert _get(server, "/v1/events?since=1d").status_code == 200
    assert _get(server, "/v1/audit?since=2h").status_code == 200
    assert _get(server, "/v1/commands?since=36500d").status_code == 200


def test_the_server_logged_no_failure(server: Fleet, tmp_path: Path) -> None:
    """None of the above reached the catch-all handler (a 500 and a traceback)."""
    _get(server, f"/v1/events?after={TOO_BIG}")
    log = server.server.log_path.read_text(errors="replace")
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
    server: Fleet, method: str, path: str, body: bytes, content_type: str | None, token: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = httpx.request(method, server.server.url + path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "AuthenticationError"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_body_that_is_not_utf8_is_told_so(server: Fleet) -> None:
    response = httpx.post(
        server.server.url + "/v1/groups",
        content=b'{"name": "\xff"}',
        headers={
            "authorization": f"Bearer {server.server.token}",
            "content-type": "application/json",
        },
    )
    message = _assert_sentence(response)
    assert "UTF-8" in message and "0xff" in message
    assert response.json()["error"]["type"] == "ValidationError"


def test_a_body_that_is_not_json_is_told_so(server: Fleet) -> None:
    response = httpx.post(
        server.server.url + "/v1/groups",
        content=b"{not json",
        headers={
            "authorization": f"Bearer {server.server.token}",
            "content-type": "application/json",
        },
    )
    assert "not valid JSON" in _assert_sentence(response)
