"""Documents: named, versioned, typed script templates, and how one becomes the steps
a node runs.

    description: Restart a service and show its state.
    parameters:
      service: {type: String, allowedPattern: "^[a-z0-9@._-]+$"}
      wait: {type: Integer, default: 2}
    mainSteps:
      - name: restart
        action: runShellScript
        inputs:
          runCommand: ["systemctl restart \"$service\"", "sleep \"$wait\""]
          timeoutSeconds: 60
      - name: show
        action: runShellScript
        precondition: {StringEquals: [platformType, Linux]}
        inputs: {runCommand: "systemctl status {{ service }}"}

Parameters reach scripts as data, never as code:

- every named parameter is an environment variable of every step (and, with
  `interpolationType: ENV_VAR`, also `SSM_<name>`, as in SSM);
- a runCommand line that is exactly one placeholder (`"{{ commands }}"`) takes the
  value itself (a list stays a list): that is how a document takes a whole script, and
  that value is code by design;
- a placeholder inside a longer script line is not replaced by the value's text: the
  value travels in the environment variable `FLEETRUN_P_<name>` and the placeholder
  becomes a reference to it written for its position (`fleetrun.core.substitution`),
  and a position where no such reference is data is refused when the document is
  written; placeholders in other inputs (working directory, timeout) take the plain
  text, which is never run.

`validate` checks a document and names the field at fault; `bind_parameters` checks
values against their declarations; `resolve_steps` makes the steps.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetrun.core import envnames, substitution
from fleetrun.core.errors import ValidationError
from fleetrun.core.protocol import Step
from fleetrun.core.substitution import Line, Ref

ACTIONS = ("runShellScript", "runPythonScript", "runPowerShellScript", "getNodeInfo")
PARAMETER_TYPES = ("String", "StringList", "Integer", "Boolean")
PLATFORMS = {"linux": "Linux", "macos": "MacOS", "darwin": "MacOS", "windows": "Windows"}
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_STEP_TIMEOUT_S = 172800

NAME_RE = re.compile(r"^[A-Za-z0-9_\-.]{3,128}$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,128}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_WHOLE = re.compile(r"^\{\{\s*([A-Za-z0-9_]+)\s*\}\}$")

_TOP_KEYS = {"schemaVersion", "description", "parameters", "mainSteps"}
_PARAM_KEYS = {
    "type",
    "description",
    "default",
    "allowedValues",
    "allowedPattern",
    "minItems",
    "maxItems",
    "minChars",
    "maxChars",
    "displayType",
    "interpolationType",
}
VALUE_PREFIX = "FLEETRUN_P_"  # the variable a placeholder inside a line refers to
WORD_VAR = "FLEETRUN_L{}_{}"  # a list's item, in a shell word (index, name)
SSM_VAR = "SSM_{}"  # interpolationType: ENV_VAR
_STEP_KEYS = {"name", "action", "inputs", "precondition", "onFailure", "runAs"}
_INPUT_KEYS = {"runCommand", "workingDirectory", "timeoutSeconds"}


def _builtin(action: str, description: str) -> dict[str, Any]:
    return {
        "schemaVersion": "2.2",
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


GET_NODE_INFO: dict[str, Any] = {
    "schemaVersion": "2.2",
    "description": "Report the node's facts, uptime, load, memory and disk use, as JSON. "
    "Read-only: it runs inside the agent and starts no process, so it may run in monitor mode.",
    "mainSteps": [{"action": "getNodeInfo", "name": "getNodeInfo", "inputs": {"runCommand": ""}}],
}

BUILTIN_DOCUMENTS: dict[str, dict[str, Any]] = {
    "GetNodeInfo": GET_NODE_INFO,
    "RunShellScript": _builtin("runShellScript", "Run a shell script."),
    "RunPythonScript": _builtin("runPythonScript", "Run a Python script with python3."),
    "RunPowerShellScript": _builtin(
        "runPowerShellScript", "Run a PowerShell script with pwsh (where it is installed)."
    ),
}


# -- reading and checking ---------------------------------------------------------


def parse(text: str) -> dict[str, Any]:
    """A document from YAML or JSON text (JSON is YAML), or a ValidationError."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"The document is larger than {MAX_DOCUMENT_BYTES // 1024} KB.")
    import yaml  # only where documents are read from text, not on the agent

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "it is not YAML or JSON"
        raise ValidationError(f"The document cannot be read{where}: {problem}.") from None
    if not isinstance(content, dict):
        raise ValidationError("The document must be a mapping with mainSteps (YAML or JSON).")
    return content


def _fail(where: str, problem: str) -> ValidationError:
    return ValidationError(f"The document is not valid: {where} {problem}.")


def validate(content: dict[str, Any]) -> dict[str, Any]:
    """Check a document; return it unchanged, or raise naming the field at fault."""
    if not isinstance(content, dict):
        raise _fail("the document", "must be a mapping")
    _no_unknown(content, _TOP_KEYS, "")
    if "description" in content and not isinstance(content["description"], str | None):
        raise _fail("description", "must be text")
    params = content.get("parameters") or {}
    if not isinstance(params, dict):
        raise _fail("parameters", "must be a mapping of parameter names to declarations")
    for name, spec in params.items():
        _check_parameter(str(name), spec)
    steps = content.get("mainSteps")
    if not isinstance(steps, list) or not steps:
        raise _fail("mainSteps", "must be a list of at least one step")
    seen: set[str] = set()
    for index, step in enumerate(steps):
        _check_step(index, step, params, seen)
    if len(canonical(content)) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"The document is larger than {MAX_DOCUMENT_BYTES // 1024} KB.")
    return content


def _no_unknown(mapping: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        place = f"{where}.{unknown[0]}" if where else unknown[0]
        raise _fail(place, f"is not a known field (known: {', '.join(sorted(known))})")


def _check_parameter(name: str, spec: Any) -> None:
    where = f"parameters.{name}"
    if not _PARAM_NAME.match(name):
        raise _fail(where, "has a bad name: use letters, digits and _ and start with a letter")
    reason = envnames.refusal(name)
    if reason:
        raise _fail(
            where,
            f"cannot be a parameter's name: every parameter becomes an environment variable "
            f"of the script, and {reason}; rename it",
        )
    if not isinstance(spec, dict):
        raise _fail(where, "must be a mapping with at least a type")
    _no_unknown(spec, _PARAM_KEYS, where)
    kind = spec.get("type", "String")
    if kind not in PARAMETER_TYPES:
        raise _fail(f"{where}.type", f"must be one of {', '.join(PARAMETER_TYPES)}, not {kind!r}")
    if "interpolationType" in spec and (spec["interpolationType"] != "ENV_VAR" or kind != "String"):
        raise _fail(
            f"{where}.interpolationType",
            "must be ENV_VAR, on a String parameter (its value is then also in SSM_" + name + ")",
        )
    for key in ("minItems", "maxItems", "minChars", "maxChars"):
        if key in spec and (not isinstance(spec[key], int) or spec[key] < 0):
            raise _fail(f"{where}.{key}", "must be a whole number, 0 or more")
    allowed = spec.get("allowedValues")
    if allowed is not None and (
        not isinstance(allowed, list)
        or not allowed
        or any(isinstance(v, dict | list) for v in allowed)
    ):
        raise _fail(f"{where}.allowedValues", "must be a non-empty list of values")
    pattern = spec.get("allowedPattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise _fail(f"{where}.allowedPattern", "must be a regular expression as text")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(
                f"{where}.allowedPattern", f"is not a valid regular expression ({exc})"
            ) from None
    if "default" in spec:
        try:
            _coerce(name, spec, _as_values(spec["default"]))
        except ValidationError as exc:
            raise _fail(
                f"{where}.default", f"does not fit its declaration: {exc.message}"
            ) from None


def _check_step(index: int, step: Any, params: dict[str, Any], seen: set[str]) -> None:
    where = f"mainSteps[{index}]"
    if not isinstance(step, dict):
        raise _fail(where, "must be a mapping with name, action and inputs")
    _no_unknown(step, _STEP_KEYS, where)
    name = step.get("name")
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise _fail(f"{where}.name", "is required: 1-128 letters, digits, _ - or .")
    if name in seen:
        raise _fail(f"{where}.name", f"{name!r} is used by an earlier step; step names are unique")
    seen.add(name)
    if step.get("action") not in ACTIONS:
        raise _fail(
            f"{where}.action", f"must be one of {', '.join(ACTIONS)}, not {step.get('action')!r}"
        )
    if step.get("onFailure", "exit") not in ("exit", "continue"):
        raise _fail(f"{where}.onFailure", "must be exit or continue")
    if "runAs" in step and not (isinstance(step["runAs"], str) and step["runAs"].strip()):
        raise _fail(f"{where}.runAs", "must be a user name")
    inputs = step.get("inputs")
    if not isinstance(inputs, dict):
        raise _fail(f"{where}.inputs", "is required: a mapping with runCommand")
    _no_unknown(inputs, _INPUT_KEYS, f"{where}.inputs")
    run = inputs.get("runCommand")
    if not (
        isinstance(run, str) or (isinstance(run, list) and all(isinstance(x, str) for x in run))
    ):
        raise _fail(f"{where}.inputs.runCommand", "is required: a script line or a list of lines")
    if "workingDirectory" in inputs and not isinstance(inputs["workingDirectory"], str):
        raise _fail(f"{where}.inputs.workingDirectory", "must be a path")
    timeout = inputs.get("timeoutSeconds")
    if timeout is not None and not _is_placeholder(timeout) and not _timeout_ok(timeout):
        raise _fail(f"{where}.inputs.timeoutSeconds", f"must be 1 to {MAX_STEP_TIMEOUT_S} seconds")
    if "precondition" in step:
        _check_precondition(f"{where}.precondition", step["precondition"])
    for text in _strings(step):
        for ref in _PLACEHOLDER.findall(text):
            if ref not in params:
                raise _fail(where, f"refers to {{{{ {ref} }}}}, which is not a declared parameter")
    try:
        _place(step["action"], name, _lines(run, params, None))
    except ValidationError as exc:
        raise ValidationError(f"The document is not valid: {exc.message}") from None


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _WHOLE.match(value) is not None


def _timeout_ok(value: Any) -> bool:
    try:
        seconds = int(str(value))
    except ValueError:
        return False
    return 1 <= seconds <= MAX_STEP_TIMEOUT_S


def _check_precondition(where: str, pre: Any) -> None:
    if not isinstance(pre, dict) or set(pre) != {"StringEquals"}:
        raise _fail(where, "must be {StringEquals: [platformType, Linux|MacOS|Windows]}")
    pair = pre["StringEquals"]
    if not isinstance(pair, list) or len(pair) != 2 or "platformType" not in pair:
        raise _fail(f"{where}.StringEquals", "must be [platformType, Linux|MacOS|Windows]")
    other = pair[1] if pair[0] == "platformType" else pair[0]
    if not isinstance(other, str) or (
        other.lower() not in PLATFORMS and not _is_placeholder(other)
    ):
        raise _fail(
            f"{where}.StringEquals",
            f"compares platformType with {other!r}: use Linux, MacOS or Windows",
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def canonical(content: dict[str, Any]) -> bytes:
    """The content as canonical JSON: what is hashed and signed."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(content)).hexdigest()


# -- parameters -----------------------------------------------------------------


def _as_values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [_text(v) for v in value]
    return [_text(value)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _coerce(name: str, spec: dict[str, Any], values: list[str]) -> str | list[str]:
    kind = spec.get("type", "String")
    if kind == "StringList":
        low, high = spec.get("minItems"), spec.get("maxItems")
        if low is not None and len(values) < low:
            raise ValidationError(f"Parameter {name!r} needs at least {low} value(s).")
        if high is not None and len(values) > high:
            raise ValidationError(f"Parameter {name!r} takes at most {high} value(s).")
        for value in values:
            _check_value(name, spec, value)
        return values
    if len(values) != 1:
        raise ValidationError(f"Parameter {name!r} takes exactly one value, not {len(values)}.")
    value = values[0]
    if kind == "Integer":
        try:
            value = str(int(value.strip()))
        except ValueError:
            raise ValidationError(
                f"Parameter {name!r} must be a whole number, not {value!r}."
            ) from None
    elif kind == "Boolean":
        if value.strip().lower() not in ("true", "false"):
            raise ValidationError(f"Parameter {name!r} must be true or false, not {value!r}.")
        value = value.strip().lower()
    _check_value(name, spec, value)
    return value


def _check_value(name: str, spec: dict[str, Any], value: str) -> None:
    allowed = spec.get("allowedValues")
    if allowed is not None and value not in [_text(a) for a in allowed]:
        choices = ", ".join(_text(a) for a in allowed)
        raise ValidationError(f"Parameter {name!r} must be one of: {choices} (not {value!r}).")
    pattern = spec.get("allowedPattern")
    if pattern is not None and re.search(pattern, value) is None:
        raise ValidationError(f"Parameter {name!r} value {value!r} does not match {pattern}.")
    low, high = spec.get("minChars"), spec.get("maxChars")
    if low is not None and len(value) < low:
        raise ValidationError(f"Parameter {name!r} needs at least {low} character(s).")
    if high is not None and len(value) > high:
        raise ValidationError(f"Parameter {name!r} takes at most {high} character(s).")


def bind_parameters(
    content: dict[str, Any], given: dict[str, list[str]]
) -> dict[str, str | list[str]]:
    """The document's parameters with defaults filled in and values checked against
    their declarations, or a ValidationError that names the parameter at fault."""
    declared: dict[str, Any] = content.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValidationError(
            f"Parameter {unknown[0]!r} is not defined by the document; it takes: "
            f"{', '.join(sorted(declared)) or 'no parameters'}."
        )
    bound: dict[str, str | list[str]] = {}
    for name, spec in declared.items():
        if name in given:
            values = list(given[name])
        elif "default" in spec:
            values = _as_values(spec["default"])
        else:
            raise ValidationError(
                f"Parameter {name!r} is required: pass it with --param {name}=VALUE."
            )
        bound[name] = _coerce(name, spec, values)
    return bound


# -- steps ----------------------------------------------------------------------


def substitute(value: Any, params: Mapping[str, str | list[str]]) -> Any:
    """Replace placeholders in inputs that are never run (working directory, timeout,
    precondition): a whole-string placeholder takes the value itself, one inside a
    longer string its text."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and whole.group(1) in params:
            return params[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: _plain(params, m), value)
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    return value


def _plain(params: Mapping[str, str | list[str]], match: re.Match[str]) -> str:
    value = params.get(match.group(1))
    if value is None:
        return match.group(0)
    return value if isinstance(value, str) else "\n".join(value)


def _items(run_command: Any) -> list[str]:
    return (
        [run_command] if isinstance(run_command, str) else [str(x) for x in _flatten(run_command)]
    )


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _lines(
    run_command: Any,
    declared: Mapping[str, Any],
    values: Mapping[str, str | list[str]] | None,
) -> list[Line | None]:
    """The script's lines as text and references; None for a line that is a whole
    placeholder (the value itself, code by design)."""
    lines: list[Line | None] = []
    for item in _items(run_command):
        whole = _WHOLE.match(item)
        if whole and whole.group(1) in declared:
            lines.append(None)
            continue
        pieces: list[str | Ref] = []
        last = 0
        for match in _PLACEHOLDER.finditer(item):
            name = match.group(1)
            pieces.append(item[last : match.start()])
            if name in declared:
                value = values.get(name) if values is not None else None
                pieces.append(value_ref(name, match.group(0), value))
            else:
                pieces.append(match.group(0))
            last = match.end()
        pieces.append(item[last:])
        lines.append(tuple(p for p in pieces if p != ""))
    return lines


def script_parameters(content: Mapping[str, Any]) -> dict[str, set[str]]:
    """The parameters whose value is code by design (a runCommand line that is exactly
    their placeholder), with the actions of the steps that run them."""
    declared = content.get("parameters") or {}
    found: dict[str, set[str]] = {}
    for step in content.get("mainSteps") or []:
        run = (step.get("inputs") or {}).get("runCommand", [])
        for item in _items(run):
            whole = _WHOLE.match(item)
            if whole and whole.group(1) in declared:
                found.setdefault(whole.group(1), set()).add(str(step.get("action")))
    return found


def value_ref(name: str, label: str, value: str | list[str] | None) -> Ref:
    """The reference a placeholder of `name` becomes (a list also gets one variable
    per item, for shell words)."""
    words = None
    if isinstance(value, list):
        words = tuple(WORD_VAR.format(i, name) for i in range(len(value)))
    return Ref(label, VALUE_PREFIX + name, words)


def _place(action: str, step: str, lines: list[Line | None]) -> list[str | None]:
    if action == "getNodeInfo":  # never run: the agent answers it itself
        return [None if line is None else "".join(str(p) for p in line) for line in lines]
    return substitution.place(action, f"Step {step!r}", lines)


def _joined(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "\n".join(value)


def render_script(
    action: str,
    step: str,
    run_command: Any,
    declared: Mapping[str, Any],
    values: Mapping[str, str | list[str]],
) -> tuple[str, dict[str, str]]:
    """A step's script with its placeholders placed, and the variables that carry the
    values its references read."""
    lines = _lines(run_command, declared, values)
    placed = _place(action, step, lines)
    wholes = iter(
        m.group(1) for m in map(_WHOLE.match, _items(run_command)) if m and m.group(1) in declared
    )
    out: list[str] = []
    env: dict[str, str] = {}
    for line, text in zip(lines, placed, strict=True):
        if line is None:
            value = values[next(wholes)]
            out.extend([value] if isinstance(value, str) else value)
            continue
        out.append(str(text))
        for piece in line:
            if isinstance(piece, Ref):
                name = piece.var.removeprefix(VALUE_PREFIX)
                env[piece.var] = _joined(values[name])
                if piece.words and action == "runShellScript":
                    env.update(zip(piece.words, values[name], strict=True))
    return "\n".join(out) + "\n", env


def _environment(
    declared: Mapping[str, Any], params: Mapping[str, str | list[str]], run_command: Any
) -> dict[str, str]:
    """Named parameters as environment variables, except the one that is the script;
    ENV_VAR parameters also as SSM_<name>."""
    whole = _WHOLE.match(run_command) if isinstance(run_command, str) else None
    script_param = whole.group(1) if whole else None
    env = {name: _joined(value) for name, value in params.items() if name != script_param}
    envnames.check(env, "Parameter")
    for name, spec in declared.items():
        if isinstance(spec, dict) and spec.get("interpolationType") == "ENV_VAR" and name in params:
            env[SSM_VAR.format(name)] = _joined(params[name])
    return env


@dataclass(frozen=True)
class StepOptions:
    run_as: str | None = None
    args: list[str] = field(default_factory=list)


def resolve_steps(
    content: dict[str, Any],
    params: dict[str, str | list[str]],
    options: StepOptions | None = None,
) -> list[Step]:
    """The steps of a checked document with its parameters bound."""
    options = options or StepOptions()
    declared: dict[str, Any] = content.get("parameters") or {}
    steps: list[Step] = []
    for raw in content.get("mainSteps") or []:
        raw_inputs = raw.get("inputs") or {}
        action = raw["action"]
        script, values_env = render_script(
            action, raw["name"], raw_inputs.get("runCommand", []), declared, params
        )
        other = substitute({k: v for k, v in raw_inputs.items() if k != "runCommand"}, params)
        timeout = other.get("timeoutSeconds")
        if timeout not in (None, "") and not _timeout_ok(timeout):
            raise ValidationError(
                f"Step {raw['name']!r}: timeoutSeconds {timeout!r} must be 1 to "
                f"{MAX_STEP_TIMEOUT_S} seconds."
            )
        precondition = (
            substitute(raw.get("precondition"), params) if raw.get("precondition") else None
        )
        steps.append(
            Step(
                name=raw["name"],
                action=action,
                script=script,
                args=list(options.args),
                env={**_environment(declared, params, raw_inputs.get("runCommand")), **values_env},
                working_directory=other.get("workingDirectory") or None,
                timeout_s=float(timeout) if timeout not in (None, "") else None,
                on_failure=raw.get("onFailure", "exit"),
                run_as=raw.get("runAs") or options.run_as,
                precondition=precondition,
            )
        )
    return steps


def platform_type(system: str) -> str:
    """Linux, MacOS or Windows, from `platform.system()`."""
    return PLATFORMS.get(system.lower(), system)


def precondition_holds(precondition: dict[str, Any] | None, system: str) -> bool:
    """Whether a step's precondition holds on a node (platform compared without case)."""
    if not precondition:
        return True
    pair = precondition.get("StringEquals") or []
    other = pair[1] if pair and pair[0] == "platformType" else (pair[0] if pair else "")
    return platform_type(str(other)).lower() == platform_type(system).lower()
