"""The node's local configuration: config.toml in the state directory.

Only someone who can write that file (the agent's own user, usually root) can change
it; the server has no way to. The running agent reads it again whenever it changes.
A file that cannot be read makes the agent refuse everything sent to it: when the
node's wishes are unknown, nothing runs. The agent keeps running and says why in its
log and in `fleetrun-agent status`; `config set` and `config clear` repair such a file
(the broken one is kept beside it as config.toml.broken).

`config set` and `config clear` never leave a file the agent cannot read: the new text
is written to a temporary file beside it, read back with `load` (the agent's own
reader), compared with what was meant, and only then renamed over the old file. If any
of that fails, the file on disk is the one that was there before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fleetrun.agent.state import fsync_dir, write_atomic
from fleetrun.core.errors import ValidationError
from fleetrun.core.localpolicy import (
    KEYS,
    LIST_KEYS_LOCKED_IN_MONITOR,
    LocalConfig,
    parse_setting,
    parse_value,
)

log = logging.getLogger(__name__)

HEADER = "# fleetrun agent: local configuration. Change it with `fleetrun-agent config`.\n"


class ConfigError(Exception):
    """The configuration file cannot be read or written: the message says why."""


class BrokenConfigError(ConfigError):
    """The file is there and readable, but what it holds is not a configuration
    (not UTF-8, not TOML, or keys and values this agent does not know)."""


def load(path: Path) -> LocalConfig:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return LocalConfig()
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BrokenConfigError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise BrokenConfigError(f"{path} is not valid TOML ({exc})") from exc
    values: dict[str, Any] = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise BrokenConfigError(f"{path}: {section} must be a table")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in KEYS:
                raise BrokenConfigError(f"{path}: {key} is not a configuration key")
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
        raise BrokenConfigError(f"{path}: {exc.message}") from None


def render(config: LocalConfig) -> str:
    """The file's text: one table per section, written by a TOML writer."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in sorted(config.values.items()):
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    return HEADER + ("\n" + tomli_w.dumps(sections) if sections else "")


def save(path: Path, config: LocalConfig, *, keep_broken: bool = False) -> None:
    """Write the file (mode 0600) so that it is replaced whole, and only by a file that
    reads back as `config`; otherwise say why and leave the old file as it was.
    `keep_broken` first copies the old file to config.toml.broken for its owner."""
    try:
        _replace_checked(path, config, keep_broken)
    except PermissionError as exc:
        raise ConfigError(
            f"Cannot write {path}: permission denied; run this as the agent's user (usually root)."
        ) from exc
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror}; nothing was changed.") from exc


def _replace_checked(path: Path, config: LocalConfig, keep_broken: bool) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(render(config).encode())
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        _check_reads_back(tmp, config, path)
        if keep_broken:
            write_atomic(broken_path(path), path.read_bytes(), 0o600)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def _check_reads_back(tmp: Path, config: LocalConfig, path: Path) -> None:
    """The written text, read as the agent reads it, must say what was meant."""
    try:
        read = load(tmp)
    except ConfigError as exc:
        raise ConfigError(
            f"The new {path.name} would not read back ({exc}); nothing was changed."
        ) from exc
    if read.values != config.values:
        changed = sorted(k for k in {*read.values, *config.values} if read.get(k) != config.get(k))
        raise ConfigError(
            f"The new {path.name} would read back differently ({', '.join(changed)}); "
            "nothing was changed."
        )


@dataclass(frozen=True)
class Change:
    """A configuration as written, and what was wrong with the file it replaced."""

    config: LocalConfig
    replaced_broken: str | None = None  # why the old file could not be read

    def get(self, key: str) -> Any:
        return self.config.get(key)


def _load_for_change(path: Path) -> tuple[LocalConfig, str | None]:
    """The configuration to change; a broken file counts as empty (the change
    writes a fresh one) and is kept as config.toml.broken for its owner to read."""
    try:
        return load(path), None
    except BrokenConfigError as exc:
        return LocalConfig(), str(exc)


def _write_change(path: Path, config: LocalConfig, broken: str | None) -> Change:
    save(path, config, keep_broken=broken is not None)
    return Change(config, broken)


def broken_path(path: Path) -> Path:
    return path.with_name(path.name + ".broken")


def set_value(
    path: Path, key: str, text: str, *, add: bool = False, remove: bool = False
) -> Change:
    value = parse_setting(key, text)
    config, broken = _load_for_change(path)
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
    return _write_change(path, LocalConfig({**config.values, key: value}), broken)


def clear_value(path: Path, key: str) -> Change:
    if key not in KEYS:
        raise ValidationError(
            f"{key!r} is not a configuration key: see `fleetrun-agent config list`."
        )
    config, broken = _load_for_change(path)
    if key in LIST_KEYS_LOCKED_IN_MONITOR and config.get("config.mode") == "monitor":
        raise ValidationError(
            f"config.mode is monitor: {key} cannot be changed; set config.mode full first."
        )
    values = dict(config.values)
    values.pop(key, None)
    return _write_change(path, LocalConfig(values), broken)


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
            log.error(
                "the local configuration cannot be read (%s): this node refuses everything "
                "until it is repaired with `fleetrun-agent config set` or `config clear`",
                exc,
            )
        return True

    def report(self) -> dict[str, Any]:
        """What the server is told (read-only there)."""
        effective = self.config.effective()
        if self.error:
            effective["error"] = self.error
        return effective
