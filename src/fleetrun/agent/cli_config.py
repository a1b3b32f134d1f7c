"""`fleetrun-agent config`: the node's local configuration, changed only on the node
(agent/config.py reads and writes it; docs/security.md has the keys)."""

from __future__ import annotations

from pathlib import Path

import click

from fleetrun.agent import config as local_config
from fleetrun.agent.cli_base import SETTINGS, Group, Options, common, pass_options, say
from fleetrun.agent.config import BrokenConfigError, ConfigError
from fleetrun.core.errors import ValidationError
from fleetrun.core.localpolicy import KEYS, LocalConfig


@click.group("config", cls=Group, context_settings=SETTINGS)
@common
def config_group() -> None:
    """The node's local configuration (changed only here)."""


@config_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.option("--add", is_flag=True, help="Add to a list instead of replacing it.")
@click.option("--remove", is_flag=True, help="Remove from a list.")
@common
@pass_options
def config_set(opts: Options, key: str, value: str, add: bool, remove: bool) -> int:
    """Set KEY to VALUE (lists: comma-separated)."""
    if add and remove:
        raise click.UsageError("--add and --remove cannot be used together.")
    path = opts.state().config_path
    change = local_config.set_value(path, key, value, add=add, remove=remove)
    _changed(opts, path, key, change, f"{key} = {_show(change.get(key))}")
    return 0


@config_group.command("clear")
@click.argument("key")
@common
@pass_options
def config_clear(opts: Options, key: str) -> int:
    """Reset KEY to its default."""
    path = opts.state().config_path
    change = local_config.clear_value(path, key)
    _changed(opts, path, key, change, f"{key} reset to {_show(change.get(key))}")
    return 0


def _changed(opts: Options, path: Path, key: str, change: local_config.Change, text: str) -> None:
    if change.replaced_broken:
        say(
            f"the old file could not be read ({change.replaced_broken}); it is kept as "
            f"{local_config.broken_path(path)} and {path} now holds only what was set since."
        )
    opts.print({key: change.get(key)}, text)


@config_group.command("get")
@click.argument("key")
@common
@pass_options
def config_get(opts: Options, key: str) -> int:
    """Show one key."""
    if key not in KEYS:
        raise ValidationError(
            f"{key!r} is not a configuration key: see `fleetrun-agent config list`."
        )
    effective = _readable(opts.state().config_path).effective()
    opts.print({key: effective[key]}, _show(effective[key]))
    return 0


@config_group.command("list")
@common
@pass_options
def config_list(opts: Options) -> int:
    """Show every key in force."""
    effective = _readable(opts.state().config_path).effective()
    width = max(len(k) for k in KEYS)
    lines = [f"{k:<{width}}  {_show(effective[k]):<40}  {KEYS[k].help}" for k in KEYS]
    opts.print(effective, "\n".join(lines))
    return 0


def _readable(path: Path) -> LocalConfig:
    """The configuration, or a ConfigError that says the node refuses everything and
    how to repair the file."""
    try:
        return local_config.load(path)
    except BrokenConfigError as exc:
        raise ConfigError(
            f"The local configuration cannot be read ({exc}), so this node refuses "
            "everything: fix the file, or overwrite it with `fleetrun-agent config set KEY "
            "VALUE` or `fleetrun-agent config clear KEY`."
        ) from exc


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return "(not set)" if value is None else str(value)
