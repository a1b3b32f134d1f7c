"""Run commands over the API, in process: bad input gets one sentence, the right status,
and stores nothing. (A script from scriptUri, run by an agent, is in
tests/e2e/test_run_command_input.py.)"""

from __future__ import annotations

import pytest

GOOD = {"source": {"script": "true"}}


def _put(app, node, name, body):
    return app.http.put(
        f"/v1/nodes/{node}/run-commands/{name}",
        json=body,
        headers={"authorization": f"Bearer {app.token}"},
    )


def _names(app, node):
    return [rc.name for rc in app.client.list_run_commands(node)]


@pytest.mark.parametrize(
    ("name", "body", "status", "phrase"),
    [
        ("two", {"source": {"script": "true", "scriptUri": "https://h/x"}}, 400, "exactly one"),
        ("none", {"source": {}}, 400, "this one has none"),
        ("doc", {"source": {"documentName": "Nope"}}, 404, "No document 'Nope'"),
        ("a" * 37, GOOD, 400, "use 1 to 36 letters, digits"),
        ("-dash", GOOD, 400, "starting with a letter or a digit"),
        ("baduri", {"source": {"scriptUri": "not a url"}}, 400, "scriptUri 'not a url'"),
        ("ftp", {"source": {"scriptUri": "ftp://h/x"}}, 400, "is not a valid URL"),
        ("out", {**GOOD, "outputUri": "nope"}, 400, "outputUri 'nope'"),
        ("s3", {**GOOD, "errorUri": "s3://bucket"}, 400, "needs an object key"),
        ("sha", {"source": {"scriptUri": "https://h/x", "scriptSha256": "ab"}}, 400, "64 hex"),
        ("empty", {"source": {"script": "  "}}, 400, "script is empty"),
        ("t", {**GOOD, "timeoutInSeconds": -1}, 400, "out of range"),
        ("typo", {**GOOD, "typo": 1}, 400, "'typo' is not a known field"),
        ("env", {**GOOD, "parameters": [{"name": "A-B", "value": "1"}]}, 400, "letters, digits"),
        ("self", {**GOOD, "runAfter": ["self"]}, 400, "cannot run after itself"),
    ],
)
def test_bad_bodies_get_one_sentence_and_store_nothing(app, name, body, status, phrase):
    [node] = [n.node_id for n in app.enrol(1)]
    response = _put(app, node, name, body)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert phrase in message, message
    assert message.endswith(".") and "\n" not in message
    assert _names(app, node) == []


def test_an_unknown_node_is_404_and_named(app):
    response = _put(app, "n-00000000000000000", "x", GOOD)
    assert response.status_code == 404
    assert "No node n-00000000000000000" in response.json()["error"]["message"]
