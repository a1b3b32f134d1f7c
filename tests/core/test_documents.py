"""Documents: validation that names the field, typed parameters, safe substitution."""

from __future__ import annotations

import subprocess

import pytest

from fleetrun.core import documents as d
from fleetrun.core.errors import ValidationError

GOOD = {
    "description": "Restart a service",
    "parameters": {
        "service": {"type": "String", "allowedPattern": "^[a-z0-9@._-]+$"},
        "count": {"type": "Integer", "default": 2},
        "force": {"type": "Boolean", "default": False},
        "mode": {"type": "String", "allowedValues": ["fast", "slow"], "default": "fast"},
        "names": {"type": "StringList", "default": ["a"], "maxItems": 3},
    },
    "mainSteps": [
        {
            "name": "one",
            "action": "runShellScript",
            "inputs": {"runCommand": ["echo {{ service }} {{ names }}"], "timeoutSeconds": 30},
        },
        {
            "name": "two",
            "action": "runPythonScript",
            "onFailure": "continue",
            "runAs": "nobody",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"runCommand": "print({{ service }})", "workingDirectory": "/tmp"},
        },
    ],
}


def test_a_good_document_passes_and_hashes_canonically():
    assert d.validate(GOOD) is GOOD
    reordered = dict(reversed(list(GOOD.items())))
    assert d.content_hash(reordered) == d.content_hash(GOOD)


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        (lambda c: c.pop("mainSteps"), "mainSteps must be a list"),
        (lambda c: c.update(mainSteps=[]), "mainSteps must be a list"),
        (lambda c: c.update(extra=1), "extra is not a known field"),
        (
            lambda c: c["mainSteps"][0].update(action="runBash"),
            "mainSteps[0].action must be one of",
        ),
        (
            lambda c: c["mainSteps"][1].update(name="one"),
            "mainSteps[1].name 'one' is used by an earlier step",
        ),
        (lambda c: c["mainSteps"][0].pop("name"), "mainSteps[0].name is required"),
        (
            lambda c: c["mainSteps"][0]["inputs"].pop("runCommand"),
            "mainSteps[0].inputs.runCommand is required",
        ),
        (
            lambda c: c["mainSteps"][0]["inputs"].update(timeoutSeconds=0),
            "mainSteps[0].inputs.timeoutSeconds must be 1 to",
        ),
        (
            lambda c: c["mainSteps"][0]["inputs"].update(shell="bash"),
            "mainSteps[0].inputs.shell is not a known field",
        ),
        (
            lambda c: c["mainSteps"][1].update(onFailure="retry"),
            "mainSteps[1].onFailure must be exit or continue",
        ),
        (
            lambda c: c["mainSteps"][1].update(
                precondition={"StringEquals": ["platformType", "BeOS"]}
            ),
            "use Linux, MacOS or Windows",
        ),
        (
            lambda c: c["parameters"]["service"].update(type="Map"),
            "parameters.service.type must be one of",
        ),
        (
            lambda c: c["parameters"]["service"].update(allowedPattern="(["),
            "parameters.service.allowedPattern is not a valid regular expression",
        ),
        (
            lambda c: c["parameters"]["count"].update(default="two"),
            "parameters.count.default does not fit",
        ),
        (
            lambda c: c["parameters"]["mode"].update(default="medium"),
            "parameters.mode.default does not fit",
        ),
        (
            lambda c: c["parameters"].update({"1bad": {"type": "String"}}),
            "parameters.1bad has a bad name",
        ),
        (
            lambda c: c["mainSteps"][0]["inputs"].update(runCommand="echo {{ nope }}"),
            "refers to {{ nope }}",
        ),
    ],
)
def test_invalid_documents_name_the_field_at_fault(change, fault):
    import copy

    content = copy.deepcopy(GOOD)
    change(content)
    with pytest.raises(ValidationError) as err:
        d.validate(content)
    assert fault in err.value.message
    assert err.value.message.startswith("The document is not valid: ")


def test_parse_reads_yaml_and_json_and_reports_where_it_broke():
    assert d.parse("mainSteps: []\n") == {"mainSteps": []}
    assert d.parse('{"mainSteps": []}') == {"mainSteps": []}
    with pytest.raises(ValidationError, match="line 2"):
        d.parse("a: 1\n  b: 2\n")
    with pytest.raises(ValidationError, match="must be a mapping"):
        d.parse("- just\n- a list\n")


@pytest.mark.parametrize(
    ("given", "fault"),
    [
        ({}, "'service' is required"),
        ({"service": ["a"], "other": ["x"]}, "'other' is not defined"),
        ({"service": ["Bad Name!"]}, "does not match"),
        ({"service": ["a"], "count": ["two"]}, "'count' must be a whole number"),
        ({"service": ["a"], "force": ["maybe"]}, "'force' must be true or false"),
        ({"service": ["a"], "mode": ["medium"]}, "'mode' must be one of: fast, slow"),
        ({"service": ["a"], "names": ["1", "2", "3", "4"]}, "'names' takes at most 3"),
        ({"service": ["a", "b"]}, "'service' takes exactly one value"),
    ],
)
def test_parameter_values_are_checked_against_their_declarations(given, fault):
    with pytest.raises(ValidationError, match=fault):
        d.bind_parameters(GOOD, given)


def test_parameters_get_defaults_and_normal_forms():
    bound = d.bind_parameters(GOOD, {"service": ["nginx"], "count": [" 07 "], "force": ["TRUE"]})
    assert bound == {
        "service": "nginx",
        "count": "7",
        "force": "true",
        "mode": "fast",
        "names": ["a"],
    }


def test_steps_carry_parameters_as_environment_and_refer_to_embedded_values():
    evil = "x'; rm -rf / #$(id)`id`"
    bound = {"service": evil, "names": ["a b", "c"], "count": "2", "force": "false", "mode": "fast"}
    one, two = d.resolve_steps(GOOD, bound, d.StepOptions(run_as="root", args=["--x"]))
    assert one.script == (
        'echo "${FLEETRUN_P_service}" "${FLEETRUN_L0_names}" "${FLEETRUN_L1_names}"\n'
    )
    assert two.script == "print(__import__('os').environ['FLEETRUN_P_service'])\n"
    assert one.env["service"] == evil and one.env["names"] == "a b\nc"
    assert one.env["FLEETRUN_P_service"] == evil and one.env["FLEETRUN_L0_names"] == "a b"
    assert one.timeout_s == 30 and one.run_as == "root" and two.run_as == "nobody"
    assert two.on_failure == "continue" and two.working_directory == "/tmp"
    assert one.args == ["--x"]
    # the shell really prints the value, and runs nothing
    done = subprocess.run(
        ["/bin/sh", "-c", one.script], capture_output=True, text=True, check=True, env=one.env
    )
    assert done.stdout == f"{evil} a b c\n"


def test_a_whole_string_placeholder_is_the_script_itself():
    content = d.BUILTIN_DOCUMENTS["RunShellScript"]
    [step] = d.resolve_steps(
        content, d.bind_parameters(content, {"commands": ["echo 1", "echo $HOME"]})
    )
    assert step.script == "echo 1\necho $HOME\n"
    assert "commands" not in step.env


@pytest.mark.parametrize(
    ("precondition", "system", "holds"),
    [
        (None, "Linux", True),
        ({"StringEquals": ["platformType", "Linux"]}, "Linux", True),
        ({"StringEquals": ["platformType", "linux"]}, "Linux", True),
        ({"StringEquals": ["Windows", "platformType"]}, "Linux", False),
        ({"StringEquals": ["platformType", "MacOS"]}, "Darwin", True),
    ],
)
def test_preconditions(precondition, system, holds):
    assert d.precondition_holds(precondition, system) is holds
