"""The `fleetrun` command: every subcommand, and the one place errors are shown."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from fleetrun import __version__
from fleetrun.cli.base import Options, api_options, describe_decode_error, describe_os_error
from fleetrun.core.errors import FleetrunError

if TYPE_CHECKING:
    import httpx

# Every subcommand, by name: (module, attribute). Modules are imported when their
# command runs, so `fleetrun --version` and `--help` import neither the SDK nor rich's
# tables (docs/cli.md: startup).
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("fleetrun.cli.serve", "server"),
    "login": ("fleetrun.cli.serve", "login"),
    "whoami": ("fleetrun.cli.access", "whoami"),
    "send": ("fleetrun.cli.send", "send"),
    "commands": ("fleetrun.cli.commands", "commands"),
    "invocations": ("fleetrun.cli.commands", "invocations"),
    "documents": ("fleetrun.cli.documents", "documents"),
    "groups": ("fleetrun.cli.groups", "groups"),
    "run-command": ("fleetrun.cli.runcommands", "run_command"),
    "keys": ("fleetrun.cli.keys", "keys"),
    "nodes": ("fleetrun.cli.nodes", "nodes"),
    "activations": ("fleetrun.cli.nodes", "activations"),
    "principals": ("fleetrun.cli.access", "principals"),
    "tokens": ("fleetrun.cli.access", "tokens"),
    "policies": ("fleetrun.cli.access", "policies"),
    "roles": ("fleetrun.cli.access", "roles"),
    "policy": ("fleetrun.cli.access", "policy"),
    "audit": ("fleetrun.cli.audit", "audit"),
    "events": ("fleetrun.cli.events", "events"),
    "rules": ("fleetrun.cli.rules", "rules"),
    "channels": ("fleetrun.cli.channels", "channels"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="fleetrun")
@api_options
def cli() -> None:
    """fleetrun: run scripts and documents on your fleet, no SSH, no inbound port."""


def _fail(message: str, code: int) -> NoReturn:
    from fleetrun.cli import render

    render.err.print(f"fleetrun: {message}", markup=False, highlight=False)
    sys.exit(code)


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None) -> None:
    """The entry point. `http` sends every API request through that client (the SDK's
    transport seam: the tests drive an in-process server with it). The exit code says
    which kind of failure it was (fleetrun.cli.exits, docs/cli.md)."""
    from fleetrun.cli.exits import Exit, for_error

    try:
        result = cli.main(
            args=argv, prog_name="fleetrun", standalone_mode=False, obj=Options(http=http)
        )
    except click.exceptions.Abort:
        from fleetrun.cli import render

        render.err.print("Aborted.")
        sys.exit(Exit.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(Exit.USAGE)
    except FleetrunError as exc:
        _fail(exc.message, for_error(exc))
    # The safety net for files and values the commands read without a sentence of their
    # own: the operator sees what was wrong, never a traceback.
    except UnicodeDecodeError as exc:
        _fail(describe_decode_error(exc), Exit.USAGE)
    except OSError as exc:
        _fail(describe_os_error(exc), Exit.USAGE)
    except ValueError as exc:
        _fail(f"A value given is not valid ({exc}): check the options and files given.", Exit.USAGE)
    except KeyboardInterrupt:
        sys.exit(Exit.INTERRUPTED)
    sys.exit(result if isinstance(result, int) else 0)
