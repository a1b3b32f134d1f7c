"""Documents run by an agent: versions, typed parameters, steps with their own results.
(Validation of documents and parameters is in tests/api/test_documents.py.)"""

from __future__ import annotations

import shutil

import pytest

from fleetrun.core.errors import ConflictError, NotFoundError
from tests.api.test_documents import TWO_STEPS


def test_a_document_runs_its_steps_in_order_with_parameters(shared_fleet):
    client = shared_fleet.client
    doc = client.create_document("greet-doc", TWO_STEPS)
    assert (doc.version, doc.default_version, doc.steps) == ("1", "1", ["greet", "count"])
    assert {p.name: p.required for p in doc.parameters} == {
        "who": True,
        "mode": False,
        "count": False,
    }
    node = shared_fleet.agents[0].node_id
    command = client.send_command(
        document="greet-doc", parameters={"who": "O'Brien $x"}, node_ids=[node]
    )
    assert command.document_version == "1" and command.document_hash == doc.hash
    assert client.wait(command.id, timeout_s=60).status == "Success"
    inv = client.get_invocation(command.id, node)
    greet, count = inv.steps
    assert (greet.name, greet.status, greet.exit_code) == ("greet", "Success", 0)
    assert greet.stdout == "hello O'Brien $x (short)\nsaid O'Brien $x\n"
    assert (count.name, count.action, count.stdout) == ("count", "runPythonScript", "[0, 1, 2]\n")
    assert inv.stdout == greet.stdout + count.stdout


def test_versions_and_the_default_version(shared_fleet):
    client = shared_fleet.client
    client.create_document(
        "versions-doc",
        "mainSteps: [{name: s, action: runShellScript, inputs: {runCommand: 'echo v1'}}]",
    )
    v2 = client.update_document(
        "versions-doc",
        "mainSteps: [{name: s, action: runShellScript, inputs: {runCommand: 'echo v2'}}]",
    )
    assert (v2.version, v2.default_version, v2.latest_version) == ("2", "1", "2")
    with pytest.raises(ConflictError, match="same as version 2"):
        client.update_document(
            "versions-doc",
            "mainSteps: [{name: s, action: runShellScript, inputs: {runCommand: 'echo v2'}}]",
        )
    node = shared_fleet.agents[0].node_id

    def run(version=None):
        command = client.send_command(
            document="versions-doc", document_version=version, node_ids=[node]
        )
        client.wait(command.id, timeout_s=60)
        return client.get_invocation(command.id, node).stdout

    assert run() == "v1\n"
    assert run("2") == "v2\n" and run("$LATEST") == "v2\n"
    client.set_default_version("versions-doc", 2)
    assert run() == "v2\n"
    assert (
        client.get_document("versions-doc", "1").content["mainSteps"][0]["inputs"]["runCommand"]
        == "echo v1"
    )
    names = {d.name: d for d in client.list_documents()}
    assert names["versions-doc"].default_version == "2" and names["RunShellScript"].builtin
    with pytest.raises(NotFoundError, match="no version 9"):
        client.send_command(document="versions-doc", document_version="9", node_ids=[node])
    client.delete_document("versions-doc")
    with pytest.raises(NotFoundError, match="No document 'versions-doc'"):
        client.get_document("versions-doc")


def test_on_failure_exit_skips_the_rest_and_continue_goes_on(shared_fleet):
    client = shared_fleet.client
    client.create_document(
        "fail-doc",
        """
mainSteps:
  - {name: first, action: runShellScript, onFailure: continue, inputs: {runCommand: 'exit 3'}}
  - {name: second, action: runShellScript, inputs: {runCommand: 'echo second; exit 4'}}
  - {name: third, action: runShellScript, inputs: {runCommand: 'echo never'}}
""",
    )
    node = shared_fleet.agents[0].node_id
    command = client.send_command(document="fail-doc", node_ids=[node])
    assert client.wait(command.id, timeout_s=60).status == "Failed"
    inv = client.get_invocation(command.id, node)
    assert [(s.name, s.status, s.exit_code) for s in inv.steps] == [
        ("first", "Failed", 3),
        ("second", "Failed", 4),
        ("third", "Skipped", None),
    ]
    assert inv.status == "Failed" and inv.exit_code == 3
    assert inv.stdout == "second\n"


def test_a_step_whose_precondition_does_not_hold_is_skipped(shared_fleet):
    client = shared_fleet.client
    client.create_document(
        "platform-doc",
        """
mainSteps:
  - {name: windows, action: runPowerShellScript, precondition: {StringEquals: [platformType, Windows]},
     inputs: {runCommand: 'Write-Output hi'}}
  - {name: linux, action: runShellScript, precondition: {StringEquals: [platformType, Linux]},
     inputs: {runCommand: 'echo linux'}}
""",
    )
    node = shared_fleet.agents[0].node_id
    command = client.send_command(document="platform-doc", node_ids=[node])
    assert client.wait(command.id, timeout_s=60).status == "Success"
    inv = client.get_invocation(command.id, node)
    assert [(s.name, s.status) for s in inv.steps] == [("windows", "Skipped"), ("linux", "Success")]
    assert "precondition" in inv.steps[0].message and inv.stdout == "linux\n"


def test_built_in_python_runs_and_powershell_fails_clearly_where_there_is_none(shared_fleet):
    client = shared_fleet.client
    node = shared_fleet.agents[0].node_id
    command = client.send_command(
        document="RunPythonScript", parameters={"commands": ["print(6*7)"]}, node_ids=[node]
    )
    assert client.wait(command.id, timeout_s=60).status == "Success"
    assert client.get_invocation(command.id, node).stdout == "42\n"
    if shutil.which("pwsh"):
        pytest.skip("pwsh is installed here")
    command = client.send_command(
        document="RunPowerShellScript",
        parameters={"commands": ["Write-Output hi"]},
        node_ids=[node],
    )
    assert client.wait(command.id, timeout_s=60).status == "Failed"
    inv = client.get_invocation(command.id, node)
    assert inv.status == "Failed" and "pwsh" in inv.steps[0].message
