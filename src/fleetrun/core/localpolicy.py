"""The node's last word: what a node's local configuration lets run.

The configuration lives on the node (`fleetrun-agent config ...`); no server API can
change it. `refusal` decides, before anything runs, whether an invocation may run,
and when it may not, names the key and value that blocked it. Cancels and deletes
never pass through here: they are always allowed.

Handlers are named `publisher/type`, the way the lists name them:

    fleetrun/runShellScript  fleetrun/runPythonScript  fleetrun/runPowerShellScript
    fleetrun/scriptUri       fleetrun/getNodeInfo

Precedence of the lists (the Arc agent's): no list -> everything allowed; a handler
in the blocklist is blocked (even if also allowed); with an allowlist, only what it
names is allowed; the allowlist `Allow/None` allows nothing. In monitor mode only the
read-only handlers in MONITOR_HANDLERS run, and the lists cannot be changed.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from fleetrun.core.errors import ValidationError

MONITOR_HANDLERS = ("fleetrun/getNodeInfo",)
ALLOW_NONE = "allow/none"
MAX_TIMEOUT_S = 172800  # the longest execution timeout a command may ask for (2 days)
MAX_ITEMS = 256  # entries in one list
_NAME_PART = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}\$?")


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # bool | list | int | mode
    default: Any
    help: str


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("extensions.enabled", "bool", True, "false: this node runs nothing sent to it"),
        Key("extensions.allowlist", "list", [], "handlers allowed (publisher/type), or Allow/None"),
        Key("extensions.blocklist", "list", [], "handlers blocked (publisher/type)"),
        Key("config.mode", "mode", "full", "full, or monitor: only read-only handlers run"),
        Key(
            "runcommand.allowed_users", "list", [], "run-as users allowed (empty: the agent's own)"
        ),
        Key(
            "runcommand.max_timeout", "int", None, "the longest execution timeout accepted, seconds"
        ),
        Key(
            "security.require_signed_documents",
            "bool",
            False,
            "run only documents signed by a trusted publisher",
        ),
        Key("security.trusted_publishers", "list", [], "publisher public keys (base64 Ed25519)"),
    )
}
LIST_KEYS_LOCKED_IN_MONITOR = ("extensions.allowlist", "extensions.blocklist")


@dataclass(frozen=True)
class LocalConfig:
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        return self.values.get(key, KEYS[key].default)

    def effective(self) -> dict[str, Any]:
        """Every key with its value in force (what `config list` shows and the server sees)."""
        out = {name: self.get(name) for name in KEYS}
        if out["config.mode"] == "monitor":
            out["extensions.allowlist"] = list(MONITOR_HANDLERS)
        return out


def parse_value(key: str, text: str) -> Any:
    """A value typed for its key, or a ValidationError that says what the key takes."""
    if key not in KEYS:
        raise ValidationError(
            f"{key!r} is not a configuration key: see `fleetrun-agent config list`."
        )
    kind = KEYS[key].kind
    text = text.strip()
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ValidationError(f"{key} takes true or false, not {text!r}.")
        return text.lower() == "true"
    if kind == "int":
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise ValidationError(
                f"{key} takes a whole number of seconds (1 or more), not {text!r}."
            )
        return int(text)
    if kind == "mode":
        if text not in ("full", "monitor"):
            raise ValidationError(f"{key} takes full or monitor, not {text!r}.")
        return text
    items = [item.strip() for item in text.split(",") if item.strip()]
    for item in items:
        check_item(key, item)
    return items


def parse_setting(key: str, text: str) -> Any:
    """A value `config set` may write: parse_value's type, and also in range and made of
    what the key allows. (The reader is more lenient, so that a file written by hand or
    by an older agent keeps working.) Each refusal names the key and what it takes."""
    value = parse_value(key, text)
    kind = KEYS[key].kind
    if kind == "int" and value > MAX_TIMEOUT_S:
        raise ValidationError(
            f"{key} takes a whole number of seconds from 1 to {MAX_TIMEOUT_S} (2 days), "
            f"not {text.strip()!r}."
        )
    if kind != "list":
        return value
    if len(value) > MAX_ITEMS:
        raise ValidationError(f"{key} takes at most {MAX_ITEMS} entries, not {len(value)}.")
    for item in value:
        if key == "runcommand.allowed_users" and not _USER.fullmatch(item):
            raise ValidationError(
                f"{key} takes user names (1-64 letters, digits, _ . - @, a trailing $), "
                f"not {item!r}."
            )
        if key in ("extensions.allowlist", "extensions.blocklist") and not all(
            _NAME_PART.fullmatch(part) for part in item.split("/")
        ):
            raise ValidationError(
                f"{key} takes handler names of letters, digits, _ . and - (publisher/type), "
                f"not {item!r}."
            )
    return value


def check_item(key: str, item: str) -> None:
    if key in ("extensions.allowlist", "extensions.blocklist"):
        publisher, sep, kind = item.partition("/")
        if not sep or not publisher or not kind or "/" in kind:
            raise ValidationError(
                f"{key}: {item!r} is not a handler name: write publisher/type, e.g. "
                "fleetrun/runShellScript."
            )
    elif key == "security.trusted_publishers":
        try:
            raw = base64.b64decode(item, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValidationError(
                f"{key}: {item!r} is not a publisher key: give the base64 Ed25519 public key "
                "that `fleetrun keys create` printed."
            )


def handler_of(step: Any) -> str:
    """The handler a step needs."""
    if getattr(step, "script_uri", None):
        return "fleetrun/scriptUri"
    return f"fleetrun/{step.action}"


def _in(handler: str, names: list[str]) -> bool:
    return handler.lower() in {n.lower() for n in names}


def handler_refusal(config: LocalConfig, handler: str) -> str | None:
    if not config.get("extensions.enabled"):
        return "extensions.enabled is false: this node runs nothing sent to it."
    if config.get("config.mode") == "monitor":
        if not _in(handler, list(MONITOR_HANDLERS)):
            allowed = ", ".join(MONITOR_HANDLERS)
            return f"config.mode is monitor: only {allowed} may run, not {handler}."
        return None
    if _in(handler, config.get("extensions.blocklist")):
        return f"extensions.blocklist includes {handler}."
    allow = config.get("extensions.allowlist")
    if allow and _in(ALLOW_NONE, allow):
        return "extensions.allowlist is Allow/None: nothing may run."
    if allow and not _in(handler, allow):
        return f"extensions.allowlist does not include {handler}."
    return None


def refusal(
    config: LocalConfig,
    *,
    handlers: list[str],
    run_as: list[str | None],
    own_user: str,
    execution_timeout_s: float,
) -> str | None:
    """Why this node refuses an invocation, naming the key and value; None to run it."""
    for handler in handlers:
        reason = handler_refusal(config, handler)
        if reason:
            return reason
    allowed_users = config.get("runcommand.allowed_users")
    for user in run_as:
        if user and user != own_user and user not in allowed_users:
            shown = ", ".join(allowed_users) or f"empty (only {own_user})"
            return f"runcommand.allowed_users ({shown}) does not include {user!r}."
    limit = config.get("runcommand.max_timeout")
    if limit is not None and execution_timeout_s > limit:
        return (
            f"runcommand.max_timeout is {limit} s; this command allows {execution_timeout_s:.0f} s."
        )
    return None
