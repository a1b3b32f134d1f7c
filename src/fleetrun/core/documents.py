"""Documents: named, typed script templates, and how one becomes the steps a node runs.

A document has typed parameters and ordered main steps (SSM schema 2.2 in spirit):

    description: Run a shell script.
    parameters:
      commands: {type: StringList, description: The script, minItems: 1}
    mainSteps:
      - action: runShellScript
        name: runShellScript
        inputs: {runCommand: "{{ commands }}"}

`resolve_steps` checks the parameters against the document and substitutes
`{{ name }}` placeholders: a string that is exactly one placeholder takes the value
itself (a list stays a list), a placeholder inside a longer string takes the value's
text. Parameter values never become shell text: named parameters also reach the
script as environment variables.
"""

from __future__ import annotations

import re
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.protocol import Step

ACTIONS = ("runShellScript", "runPythonScript", "runPowerShellScript")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_WHOLE = re.compile(r"^\{\{\s*([A-Za-z0-9_]+)\s*\}\}$")


def _builtin(action: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "parameters": {
            "commands": {
                "type": "StringList",
                "description": "(Required) The script to run.",
                "minItems": 1,
            },
            "workingDirectory": {
                "type": "String",
                "default": "",
                "description": "(Optional) The directory to run in.",
            },
        },
        "mainSteps": [
            {
                "action": action,
                "name": action,
                "inputs": {
                    "runCommand": "{{ commands }}",
                    "workingDirectory": "{{ workingDirectory }}",
                },
            }
        ],
    }


BUILTIN_DOCUMENTS: dict[str, dict[str, Any]] = {
    "RunShellScript": _builtin("runShellScript", "Run a shell script."),
    "RunPythonScript": _builtin("runPythonScript", "Run a Python script with python3."),
    "RunPowerShellScript": _builtin("runPowerShellScript", "Run a PowerShell script with pwsh."),
}


def bind_parameters(
    content: dict[str, Any], given: dict[str, list[str]]
) -> dict[str, str | list[str]]:
    """The document's parameters with defaults filled in, or a ValidationError that
    names the parameter at fault."""
    declared: dict[str, Any] = content.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValidationError(
            f"Parameter {unknown[0]!r} is not defined by the document; it takes: "
            f"{', '.join(sorted(declared)) or 'no parameters'}."
        )
    bound: dict[str, str | list[str]] = {}
    for name, spec in declared.items():
        kind = spec.get("type", "String")
        if name in given:
            values = list(given[name])
        elif "default" in spec:
            default = spec["default"]
            values = [str(v) for v in default] if isinstance(default, list) else [str(default)]
        else:
            raise ValidationError(
                f"Parameter {name!r} is required: pass it with --param {name}=VALUE."
            )
        if kind == "StringList":
            if len(values) < int(spec.get("minItems", 0)):
                raise ValidationError(
                    f"Parameter {name!r} needs at least {spec['minItems']} value."
                )
            bound[name] = values
        else:
            if len(values) != 1:
                raise ValidationError(f"Parameter {name!r} takes exactly one value.")
            bound[name] = values[0]
    return bound


def substitute(value: Any, params: dict[str, str | list[str]]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and whole.group(1) in params:
            return params[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: _text(params, m), value)
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    return value


def _text(params: dict[str, str | list[str]], match: re.Match[str]) -> str:
    name = match.group(1)
    if name not in params:
        return match.group(0)
    value = params[name]
    return value if isinstance(value, str) else "\n".join(value)


def _script(run_command: Any) -> str:
    if isinstance(run_command, str):
        lines = [run_command]
    else:
        lines = [str(item) for item in _flatten(run_command)]
    return "\n".join(lines) + "\n"


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _environment(params: dict[str, str | list[str]], run_command: Any) -> dict[str, str]:
    """Named parameters as environment variables, except the one that is the script."""
    whole = _WHOLE.match(run_command) if isinstance(run_command, str) else None
    script_param = whole.group(1) if whole else None
    return {
        name: (value if isinstance(value, str) else "\n".join(value))
        for name, value in params.items()
        if name != script_param
    }


def resolve_steps(content: dict[str, Any], params: dict[str, str | list[str]]) -> list[Step]:
    """The steps of a document with its parameters bound."""
    steps: list[Step] = []
    for raw in content.get("mainSteps") or []:
        raw_inputs = raw.get("inputs") or {}
        inputs = substitute(raw_inputs, params)
        env = _environment(params, raw_inputs.get("runCommand"))
        timeout = inputs.get("timeoutSeconds")
        steps.append(
            Step(
                name=raw["name"],
                action=raw["action"],
                script=_script(inputs.get("runCommand", [])),
                env=env,
                working_directory=inputs.get("workingDirectory") or None,
                timeout_s=float(timeout) if timeout not in (None, "") else None,
                on_failure=raw.get("onFailure", "exit"),
            )
        )
    return steps
