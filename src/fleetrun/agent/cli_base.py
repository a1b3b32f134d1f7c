"""What every `fleetrun-agent` command shares: --state-dir and --json (on the group or on
the command), the output, the exit codes, and long options taken by a unique prefix."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetrun.agent.state import StateDir, default_state_dir

F = TypeVar("F", bound=Callable[..., Any])

FAILED = 1  # what was asked for could not be done (one sentence says why)
INTERRUPTED = 130  # Ctrl-C


class Failure(Exception):
    """A failure with an exit code of its own (a terminal `run`: service.EXIT_TERMINAL)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Options:
    """What every command takes, on the group or on the command itself."""

    state_dir: Path | None = None
    json: bool = False

    def state(self) -> StateDir:
        return StateDir(self.state_dir or default_state_dir())

    def print(self, data: object, text: str) -> None:
        print(json.dumps(data, indent=2) if self.json else text)


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            setattr(ctx.ensure_object(Options), name, value)
        return value

    return callback


def common(f: F) -> F:
    """--state-dir and --json, accepted on the group and on every command."""
    f = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_store("json"),
        help="Print machine-readable JSON.",
    )(f)
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=_store("state_dir"),
        help="The agent's state directory (default: $FLEETRUN_AGENT_STATE_DIR, then "
        "/var/lib/fleetrun-agent).",
    )(f)


pass_options = click.make_pass_decorator(Options, ensure=True)
SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Command(click.Command):
    """A command that, as before the agent moved to click (argparse), takes a unique
    prefix of a long option for the option (`--state` for `--state-dir`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _unabbreviated(self.get_params(ctx), args))


def _unabbreviated(params: list[click.Parameter], args: list[str]) -> list[str]:
    names = {n for p in params for n in (*p.opts, *p.secondary_opts) if n.startswith("--")}
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":  # what follows is arguments, whatever it looks like
            return out + args[index:]
        name, eq, value = arg.partition("=")
        if name.startswith("--") and name not in names:
            matches = [n for n in names if n.startswith(name)]
            arg = matches[0] + eq + value if len(matches) == 1 else arg
        out.append(arg)
    return out


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups (`config`) are Groups too


def say(message: str) -> None:
    print(f"fleetrun-agent: {message}", file=sys.stderr)
