"""SSM command documents (schemaVersion 2.2) and fleetrun documents, each read as the
other: the pure half of the SSM-compatible document operations.

An SSM document's steps name plugins (`aws:runShellScript`, `aws:runPowerShellScript`);
fleetrun's steps name actions (`runShellScript`, ...). Everything else a 2.2 command
document says that fleetrun runs (parameters, `{{ name }}` placeholders, `precondition`,
`timeoutSeconds`, `workingDirectory`, `onFailure: exit`) means the same in both, so the
translation renames actions on the way in and out; what fleetrun does not run
(`onSuccess`, `finallyStep`, other plugins) is refused when the document is written,
with the field named, as fleetrun's own documents are.

    to_fleetrun(text, fmt)   SSM Content in JSON or YAML -> fleetrun's content
    to_ssm(content)          fleetrun's content -> SSM's (the `aws:` plugin names)
    render(content, fmt)     SSM's Content text in JSON or YAML
"""

from __future__ import annotations

import json
from typing import Any

from fleetrun.core import documents
from fleetrun.core.errors import ValidationError

SCHEMA_VERSION = "2.2"
FORMATS = ("JSON", "YAML")
PLUGINS: dict[str, str] = {
    "aws:runShellScript": "runShellScript",
    "aws:runPowerShellScript": "runPowerShellScript",
}
_ACTION_TO_PLUGIN = {action: plugin for plugin, action in PLUGINS.items()}
# Where each action runs (SSM's PlatformTypes of a document: the union over its steps).
ACTION_PLATFORMS: dict[str, tuple[str, ...]] = {
    "runShellScript": ("Linux", "MacOS"),
    "runPowerShellScript": ("Windows", "Linux"),
    "runPythonScript": ("Windows", "Linux", "MacOS"),
    "getNodeInfo": ("Windows", "Linux", "MacOS"),
}
PLATFORM_ORDER = ("Windows", "Linux", "MacOS")


class SchemaVersionError(ValidationError):
    """A schemaVersion other than 2.2 (SSM's InvalidDocumentSchemaVersion)."""


def parse(text: str, fmt: str) -> dict[str, Any]:
    """SSM's Content in its DocumentFormat: JSON must be JSON; YAML is read as YAML."""
    if fmt == "JSON":
        if len(text.encode()) > documents.MAX_DOCUMENT_BYTES:
            raise ValidationError(
                f"The document is larger than {documents.MAX_DOCUMENT_BYTES // 1024} KB."
            )
        try:
            content = json.loads(text)
        except ValueError as exc:
            raise ValidationError(
                f"The document is not JSON ({exc}): send DocumentFormat YAML for YAML content."
            ) from None
        if not isinstance(content, dict):
            raise ValidationError("The document must be a JSON object with mainSteps.")
        return content
    return documents.parse(text)


def to_fleetrun(content: dict[str, Any]) -> dict[str, Any]:
    """An SSM 2.2 command document as fleetrun's content (checked by fleetrun's rules)."""
    version = content.get("schemaVersion")
    if str(version) != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schemaVersion {version!r} is not served: fleetrun runs schemaVersion 2.2 "
            "command documents (mainSteps with aws:runShellScript or aws:runPowerShellScript)."
        )
    translated = dict(content)
    steps = content.get("mainSteps")
    if isinstance(steps, list):
        translated["mainSteps"] = [_step_in(i, s) for i, s in enumerate(steps)]
    return documents.validate(translated)


def _step_in(index: int, step: Any) -> Any:
    if not isinstance(step, dict):
        return step
    action = step.get("action")
    if isinstance(action, str) and action.startswith("aws:") and action not in PLUGINS:
        raise ValidationError(
            f"The document is not valid: mainSteps[{index}].action {action} is not a plugin "
            f"fleetrun runs: use {', '.join(PLUGINS)}."
        )
    if step.get("onFailure") == "successAndExit":
        raise ValidationError(
            f"The document is not valid: mainSteps[{index}].onFailure successAndExit is not "
            "served: use exit, or continue."
        )
    return {**step, "action": PLUGINS.get(str(action), action)}


def to_ssm(content: dict[str, Any]) -> dict[str, Any]:
    """fleetrun's content with SSM's plugin names (fleetrun's own actions as they are)."""
    shown = dict(content)
    shown.setdefault("schemaVersion", SCHEMA_VERSION)
    steps = content.get("mainSteps")
    if isinstance(steps, list):
        shown["mainSteps"] = [
            {**s, "action": _ACTION_TO_PLUGIN.get(str(s.get("action")), s.get("action"))}
            if isinstance(s, dict)
            else s
            for s in steps
        ]
    return shown


def render(content: dict[str, Any], fmt: str) -> str:
    """SSM's Content text: JSON (indented) or YAML, keys in the document's order."""
    shown = to_ssm(content)
    if fmt == "YAML":
        import yaml  # only where documents are written out as text

        text: str = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True)
        return text
    return json.dumps(shown, indent=2, ensure_ascii=False)


def platform_types(content: dict[str, Any]) -> list[str]:
    """SSM's PlatformTypes: where some step of the document runs."""
    found: set[str] = set()
    for step in content.get("mainSteps") or []:
        if isinstance(step, dict):
            found.update(ACTION_PLATFORMS.get(str(step.get("action")), ()))
    return [p for p in PLATFORM_ORDER if p in found]


def parameters(content: dict[str, Any]) -> list[dict[str, str]]:
    """SSM's DocumentParameter list: Name, Type, Description, DefaultValue (as text)."""
    found = []
    for name, spec in (content.get("parameters") or {}).items():
        if not isinstance(spec, dict):
            continue
        entry = {"Name": str(name), "Type": str(spec.get("type", "String"))}
        if spec.get("description"):
            entry["Description"] = str(spec["description"])
        if "default" in spec:
            default = spec["default"]
            entry["DefaultValue"] = default if isinstance(default, str) else json.dumps(default)
        found.append(entry)
    return found
