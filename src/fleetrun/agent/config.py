"""The node's local configuration: config.toml in the state directory.

Only someone who can write that file (the agent's own user, usually root) can change
it; the server has no way to. The running agent reads it again whenever it changes.
A file that cannot be read makes the agent refuse everything sent to it: when the
node's wishes are unknown, nothing runs.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from fleetrun.agent.state import write_atomic
from fleetrun.core.errors import ValidationError
from fleetrun.core.localpolicy import KEYS, LIST_KEYS_LOCKED_IN_MONITOR, LocalConfig, parse_value


class ConfigError(Exception):
    """The configuration file cannot be read or written: the message says why."""


def load(path: Path) -> LocalConfig:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        return LocalConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in KEYS:
                raise ConfigError(f"{path}: {key} is not a configuration key")
            values[key] = _checked(key, value, path)
    return LocalConfig(values)


def _checked(key: str, value: Any, path: Path) -> Any:
    if isinstance(value, list):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    try:
        return parse_value(key, text)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None


def save(path: Path, config: LocalConfig) -> None:
    """Write the file (mode 0600) atomically, or say why it cannot be written."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in sorted(config.values.items()):
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    lines = ["# fleetrun agent: local configuration. Change it with `fleetrun-agent config`."]
    for section, table in sections.items():
        lines.append(f"\n[{section}]")
        lines += [f"{name} = {_toml(value)}" for name, value in table.items()]
    try:
        write_atomic(path, ("\n".join(lines) + "\n").encode(), 0o600)
    except PermissionError as exc:
        raise ConfigError(
            f"Cannot write {path}: permission denied; run this as the agent's user (usually root)."
        ) from exc
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror}.") from exc


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def set_value(
    path: Path, key: str, text: str, *, add: bool = False, remove: bool = False
) -> LocalConfig:
    config = load(path)
    value = parse_value(key, text)
    if key in LIST_KEYS_LOCKED_IN_MONITOR and config.get("config.mode") == "monitor":
        raise ValidationError(
            f"config.mode is monitor: {key} cannot be changed; set config.mode full first."
        )
    if add or remove:
        if KEYS[key].kind != "list":
            raise ValidationError(f"--add and --remove work on lists; {key} is not one.")
        current = list(config.get(key))
        if add:
            value = current + [v for v in value if v not in current]
        else:
            value = [v for v in current if v not in value]
    updated = LocalConfig({**config.values, key: value})
    save(path, updated)
    return updated


def clear_value(path: Path, key: str) -> LocalConfig:
    if key not in KEYS:
        raise ValidationError(
            f"{key!r} is not a configuration key: see `fleetrun-agent config list`."
        )
    config = load(path)
    if key in LIST_KEYS_LOCKED_IN_MONITOR and config.get("config.mode") == "monitor":
        raise ValidationError(
            f"config.mode is monitor: {key} cannot be changed; set config.mode full first."
        )
    values = dict(config.values)
    values.pop(key, None)
    updated = LocalConfig(values)
    save(path, updated)
    return updated


class Watcher:
    """Reads the file again when it changes (by size and modification time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.config = LocalConfig()
        self.error: str | None = None
        self.refresh()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Re-read if changed; True if the effective configuration may have changed."""
        stamp = self._current_stamp()
        if stamp == self._stamp and self._stamp is not None:
            return False
        self._stamp = stamp
        try:
            self.config, self.error = load(self.path), None
        except ConfigError as exc:
            self.config, self.error = LocalConfig(), str(exc)
        return True

    def report(self) -> dict[str, Any]:
        """What the server is told (read-only there)."""
        effective = self.config.effective()
        if self.error:
            effective["error"] = self.error
        return effective
