"""SSM 2.2 command documents read as fleetrun's, and back, as tables."""

from __future__ import annotations

import json

import pytest
import yaml

from fleetrun.core import ssmdocs
from fleetrun.core.errors import ValidationError


def _doc(action: str, **step: object) -> dict:
    return {
        "schemaVersion": "2.2",
        "mainSteps": [
            {"action": action, "name": "one", "inputs": {"runCommand": ["true"]}, **step}
        ],
    }


@pytest.mark.parametrize(
    ("ssm_action", "fleetrun_action"),
    [
        ("aws:runShellScript", "runShellScript"),
        ("aws:runPowerShellScript", "runPowerShellScript"),
        ("runPythonScript", "runPythonScript"),  # fleetrun's own actions pass as they are
    ],
)
def test_plugins_become_actions_and_back(ssm_action: str, fleetrun_action: str) -> None:
    content = ssmdocs.to_fleetrun(_doc(ssm_action))
    assert content["mainSteps"][0]["action"] == fleetrun_action
    assert ssmdocs.to_ssm(content) == _doc(ssm_action)


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        ({**_doc("aws:runShellScript"), "schemaVersion": "1.2"}, ssmdocs.SchemaVersionError, "1.2"),
        (_doc("aws:runShellScript") | {"schemaVersion": 2.2}, None, ""),
        (_doc("aws:runDocument"), ValidationError, "aws:runDocument"),
        (_doc("aws:runShellScript", onFailure="successAndExit"), ValidationError, "successAndExit"),
        (_doc("aws:runShellScript", finallyStep=True), ValidationError, "finallyStep"),
        (_doc("aws:runShellScript", onSuccess="exit"), ValidationError, "onSuccess"),
    ],
)
def test_what_is_refused(content: dict, error: type[Exception] | None, words: str) -> None:
    if error is None:
        assert ssmdocs.to_fleetrun(content)["mainSteps"][0]["action"] == "runShellScript"
        return
    with pytest.raises(error) as refused:
        ssmdocs.to_fleetrun(content)
    assert words in str(refused.value)


@pytest.mark.parametrize(
    ("actions", "platforms"),
    [
        (["runShellScript"], ["Linux", "MacOS"]),
        (["runPowerShellScript"], ["Windows", "Linux"]),
        (["runShellScript", "runPowerShellScript"], ["Windows", "Linux", "MacOS"]),
        (["getNodeInfo"], ["Windows", "Linux", "MacOS"]),
    ],
)
def test_platform_types_are_where_some_step_runs(actions: list[str], platforms: list[str]) -> None:
    content = {"mainSteps": [{"action": a, "name": f"s{i}"} for i, a in enumerate(actions)]}
    assert ssmdocs.platform_types(content) == platforms


def test_rendered_in_either_format_reads_back_the_same() -> None:
    content = ssmdocs.to_fleetrun(_doc("aws:runShellScript"))
    assert json.loads(ssmdocs.render(content, "JSON")) == _doc("aws:runShellScript")
    assert yaml.safe_load(ssmdocs.render(content, "YAML")) == _doc("aws:runShellScript")


@pytest.mark.parametrize(
    ("text", "fmt", "ok"),
    [
        ('{"schemaVersion": "2.2"}', "JSON", True),
        ("schemaVersion: '2.2'", "JSON", False),  # YAML sent as JSON
        ("schemaVersion: '2.2'", "YAML", True),
        ("[1, 2]", "JSON", False),
    ],
)
def test_content_is_read_in_its_format(text: str, fmt: str, ok: bool) -> None:
    if ok:
        assert ssmdocs.parse(text, fmt)["schemaVersion"] == "2.2"
    else:
        with pytest.raises(ValidationError):
            ssmdocs.parse(text, fmt)


def test_parameters_in_ssms_shape() -> None:
    content = {
        "parameters": {
            "commands": {"type": "StringList", "description": "What to run."},
            "count": {"type": "Integer", "default": 3},
            "dir": {"type": "String", "default": ""},
        }
    }
    assert ssmdocs.parameters(content) == [
        {"Name": "commands", "Type": "StringList", "Description": "What to run."},
        {"Name": "count", "Type": "Integer", "DefaultValue": "3"},
        {"Name": "dir", "Type": "String", "DefaultValue": ""},
    ]
