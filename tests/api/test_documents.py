"""Documents over the API, in process: invalid content and names refused naming the
fault, built-ins protected, bad parameters refused with no command made. (Running
documents' steps needs an agent: tests/e2e/test_documents.py.)"""

from __future__ import annotations

import contextlib

import pytest

from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError

TWO_STEPS = """
description: Greet, then list
parameters:
  who: {type: String, description: Whom to greet}
  mode: {type: String, allowedValues: [short, long], default: short}
  count: {type: Integer, default: 3}
mainSteps:
  - name: greet
    action: runShellScript
    inputs:
      runCommand:
        - 'echo "hello $who ($mode)"'
        - 'echo said {{ who }}'
  - name: count
    action: runPythonScript
    inputs:
      runCommand: |
        import os
        print(list(range(int(os.environ["count"]))))
"""


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("mainSteps: []", "mainSteps must be a list of at least one step"),
        (
            "mainSteps: [{name: a, action: bash, inputs: {runCommand: x}}]",
            "mainSteps[0].action must be one of",
        ),
        (
            "parameters: {p: {type: Float}}\nmainSteps: [{name: a, action: runShellScript, inputs: {runCommand: x}}]",
            "parameters.p.type must be one of",
        ),
        (
            "mainSteps: [{name: a, action: runShellScript, inputs: {runCommand: '{{ x }}'}}]",
            "refers to {{ x }}",
        ),
        ("a: [", "cannot be read"),
    ],
)
def test_an_invalid_document_is_refused_naming_the_field_and_nothing_is_stored(app, content, fault):
    client = app.client
    with pytest.raises(ValidationError) as err:
        client.create_document("bad-doc", content)
    assert fault in err.value.message
    with pytest.raises(NotFoundError):
        client.get_document("bad-doc")


def test_built_in_documents_cannot_be_changed_and_names_are_checked(app):
    client = app.client
    with pytest.raises(ConflictError, match="built-in"):
        client.create_document(
            "RunShellScript",
            "mainSteps: [{name: a, action: runShellScript, inputs: {runCommand: x}}]",
        )
    # nor a built-in's name in SSM's API, where it would name the built-in
    with pytest.raises(ConflictError, match="SSM name of the built-in document RunPythonScript"):
        client.create_document(
            "AWS-RunPythonScript",
            "mainSteps: [{name: a, action: runShellScript, inputs: {runCommand: x}}]",
        )
    with pytest.raises(ValidationError, match="Document name 'x!' is not valid"):
        client.create_document(
            "x!", "mainSteps: [{name: a, action: runShellScript, inputs: {runCommand: x}}]"
        )


@pytest.mark.parametrize(
    ("params", "status", "phrase"),
    [
        ({}, 400, "'who' is required"),
        ({"who": "x", "mode": "medium"}, 400, "'mode' must be one of: short, long"),
        ({"who": "x", "count": "many"}, 400, "'count' must be a whole number"),
        ({"who": "x", "nope": "1"}, 400, "'nope' is not defined"),
    ],
)
def test_bad_parameters_get_one_sentence_and_no_command(app, params, status, phrase):
    app.enrol(1)
    client = app.client
    with contextlib.suppress(ConflictError):
        client.create_document("params-doc", TWO_STEPS)
    before = len(client.list_commands(limit=1000))
    response = app.http.post(
        "/v1/commands",
        headers={"authorization": f"Bearer {app.token}"},
        json={
            "document_name": "params-doc",
            "parameters": {k: [v] for k, v in params.items()},
            "targets": [{"key": "all", "values": ["*"]}],
        },
    )
    assert response.status_code == status and phrase in response.json()["error"]["message"]
    assert len(client.list_commands(limit=1000)) == before
