"""The REST API, in process: every route authorized and naming its action, errors as
one sentence, paging with cursors."""

from __future__ import annotations

import re

import pytest

from fleetrun.core import access

DUMMY = {
    "node_id": "n-00000000000000000",
    "command_id": "00000000-0000-4000-8000-000000000000",
    "activation_id": "00000000-0000-4000-8000-000000000000",
    "token_id": "00000000-0000-4000-8000-000000000000",
}


def _operations(app):
    spec = app.http.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            yield path, method, op


def _operator_routes(app):
    for path, method, op in _operations(app):
        if "agent" in op.get("tags", []):
            continue  # the agent's routes take an activation or a node key, never a token
        concrete = re.sub(r"\{(\w+)\}", lambda m: DUMMY.get(m.group(1), "x"), path)
        yield path, method, op, concrete


def test_every_operator_route_needs_a_valid_token_and_names_its_action(app):
    checked = 0
    for path, method, op, concrete in _operator_routes(app):
        assert op.get("x-fleetrun-action", "").startswith("fleetrun:"), (method, path)
        # Registered in the vocabulary, so roles, docs and policy checks know it.
        assert op["x-fleetrun-action"].split(":", 1)[1] in access.ACTIONS, (method, path)
        for headers in ({}, {"authorization": "Bearer frt_wrong"}, {"authorization": "Basic x"}):
            response = app.http.request(method, concrete, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "AuthenticationError"
        checked += 1
    assert checked >= 30


def test_every_operator_route_answers_403_to_a_token_that_lacks_its_action(app):
    """Once with no policy at all, once with everything allowed but the route's own
    action denied: the route checks exactly the action it names."""
    admin = app.client
    admin.create_principal("lacks")
    headers = {"authorization": f"Bearer {admin.create_token('lacks').token}"}
    checked = 0
    for path, method, op, concrete in list(_operator_routes(app)):
        name = op["x-fleetrun-action"]
        response = app.http.request(method, concrete, headers=headers, json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["type"] == "AccessDenied"
        assert f"lacks may not perform {name}" in response.json()["error"]["message"]
        admin.put_policy("all-but", _all_but(name))
        admin.attach("lacks", policy="all-but")
        response = app.http.request(method, concrete, headers=headers, json={})
        assert response.status_code == 403, (method, path, "all but", response.text)
        assert "denies it" in response.json()["error"]["message"]
        admin.detach("lacks", policy="all-but")
        checked += 1
    assert checked >= 30


def _all_but(action):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": action, "Resource": "*"},
        ],
    }


def _api(app, method, path, headers=None, **kw):
    headers = {"authorization": f"Bearer {app.token}", **(headers or {})}
    return app.http.request(method, path, headers=headers, **kw)


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"targets": [{"key": "all"}]}, 400, "'commands' is required"),
        ({"targets": [{"key": "all"}], "parameters": {"commands": [" "]}}, 400, "script is empty"),
        ({"targets": [], "parameters": {"commands": ["x"]}}, 400, "needs targets"),
        (
            {"targets": [{"key": "tag:env"}], "parameters": {"commands": ["x"]}},
            400,
            "needs at least one value",
        ),
        (
            {
                "targets": [{"key": "NodeIds", "values": ["n-00000000000000000"]}],
                "parameters": {"commands": ["x"]},
            },
            404,
            "No node n-00000000000000000",
        ),
        (
            {"targets": [{"key": "all"}], "parameters": {"commands": ["x"]}, "typo": 1},
            400,
            "'typo' is not a known field",
        ),
        (
            {
                "targets": [{"key": "all"}],
                "parameters": {"commands": ["x"]},
                "execution_timeout_s": 0,
            },
            400,
            "out of range",
        ),
        ({"document_name": "Nope", "targets": [{"key": "all"}]}, 404, "No document 'Nope'"),
    ],
)
def test_bad_commands_get_one_sentence_and_create_nothing(app, body, status, phrase):
    app.enrol(3)
    app.client.send_command(script="true", all_nodes=True)  # one that exists already
    before = len(_api(app, "GET", "/v1/commands", params={"limit": 1000}).json()["items"])
    response = _api(app, "POST", "/v1/commands", json=body)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert phrase in message and message.endswith(".") and "\n" not in message
    after = len(_api(app, "GET", "/v1/commands", params={"limit": 1000}).json()["items"])
    assert after == before == 1


def test_not_json_and_unknown_routes_are_explained(app):
    response = _api(
        app,
        "POST",
        "/v1/commands",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert (
        response.json()["error"]["message"]
        == "The request body is not valid JSON: send a JSON object."
    )
    response = _api(app, "GET", "/v1/nope")
    assert response.status_code == 404 and "No route" in response.json()["error"]["message"]
    response = _api(app, "GET", "/v1/commands/not-an-id")
    assert (
        response.status_code == 404
        and "No command not-an-id" in response.json()["error"]["message"]
    )


def test_listing_pages_with_cursors(app):
    app.enrol(1, tags={"role": "db"})
    for _ in range(3):
        app.client.send_command(script="true", tags={"role": "db"})
    first = _api(app, "GET", "/v1/commands", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = _api(
        app, "GET", "/v1/commands", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    ids = [c["id"] for c in first["items"]] + [c["id"] for c in second["items"]]
    assert len(set(ids)) == len(ids) == 3
    bad = _api(app, "GET", "/v1/commands", params={"cursor": "garbage"})
    assert bad.status_code == 400
