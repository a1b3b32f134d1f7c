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
    from click.shell_completion import CompletionItem

# Every subcommand, by name: (module, attribute, the one line `fleetrun --help` shows).
# Modules are imported when their command runs, so `fleetrun --version` and `--help`
# import neither the SDK nor rich (docs/cli.md: startup); a test checks that each line
# is the command's own.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "server": (
        "fleetrun.cli.serve",
        "server",
        "Run the fleetrun server (API, agent gateway, dispatcher) in the foreground.",
    ),
    "login": (
        "fleetrun.cli.serve",
        "login",
        "Check the server and token, then save them for later commands.",
    ),
    "logout": (
        "fleetrun.cli.serve",
        "logout",
        "Forget the saved server and token (of the default profile, or of --profile).",
    ),
    "completion": (
        "fleetrun.cli.completion",
        "completion",
        "Print the shell completion script for bash, zsh or fish (docs/cli.md: install it).",
    ),
    "whoami": (
        "fleetrun.cli.access",
        "whoami",
        "Show the principal behind the token, and what is attached to it.",
    ),
    "send": (
        "fleetrun.cli.send",
        "send",
        "Run a script or a document on nodes: print its id, or --wait for the results.",
    ),
    "targets": (
        "fleetrun.cli.targeting",
        "targets_group",
        "Targets: see which nodes a target selects before sending to it.",
    ),
    "commands": ("fleetrun.cli.commands", "commands", "Commands: list, show, wait, cancel."),
    "invocations": (
        "fleetrun.cli.commands",
        "invocations",
        "Invocations: one command on one node.",
    ),
    "output": (
        "fleetrun.cli.output",
        "output",
        "Output: search what nodes printed, across commands.",
    ),
    "documents": (
        "fleetrun.cli.documents",
        "documents",
        "Documents: typed, versioned scripts to send by name.",
    ),
    "groups": (
        "fleetrun.cli.groups",
        "groups",
        "Node groups: a list of nodes, or every node with some tags (now and later).",
    ),
    "run-command": (
        "fleetrun.cli.runcommands",
        "run_command",
        "Named run commands on a node: create runs it, update re-runs it, delete stops it.",
    ),
    "keys": (
        "fleetrun.cli.keys",
        "keys",
        "Publisher keys: sign documents that nodes may require signatures on.",
    ),
    "nodes": ("fleetrun.cli.nodes", "nodes", "Managed nodes: list them, show one, tag them."),
    "activations": (
        "fleetrun.cli.nodes",
        "activations",
        "Activations: one-time grants that enrol nodes.",
    ),
    "principals": (
        "fleetrun.cli.access",
        "principals",
        "Principals: users and service accounts, and what is attached to them.",
    ),
    "tokens": (
        "fleetrun.cli.access",
        "tokens",
        "API tokens: shown once when created, stored only as hashes.",
    ),
    "policies": (
        "fleetrun.cli.access",
        "policies",
        "Policies: IAM-style JSON documents (see docs/access-control.md).",
    ),
    "roles": (
        "fleetrun.cli.access",
        "roles",
        "Roles: named sets of policies (Reader, Operator, Administrator, your own).",
    ),
    "policy": (
        "fleetrun.cli.access",
        "policy",
        "Try policies out: simulate a request, validate documents.",
    ),
    "audit": (
        "fleetrun.cli.audit",
        "audit",
        "The audit log: every API request and agent session, hash-chained.",
    ),
    "events": (
        "fleetrun.cli.events",
        "events",
        "The event log: every status change, node change, refusal and denial.",
    ),
    "rules": ("fleetrun.cli.rules", "rules", "Event rules: which events go to which targets."),
    "channels": (
        "fleetrun.cli.channels",
        "channels",
        "Notification channels: where `fleetrun send --notify` messages go.",
    ),
    "alarms": (
        "fleetrun.cli.alarms",
        "alarms",
        "Alarms on output lines: count matching lines per period, OK / ALARM.",
    ),
    "outputs": ("fleetrun.cli.alarms", "outputs", "Output forwarding to log systems."),
    "version": (
        "fleetrun.cli.version",
        "version",
        "Show the versions of this CLI, the agent protocol and the server.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute, _ = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, from the table above: no command module is imported."""
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx) if name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Subcommand names from the table above (no module is imported for them), then
        the group's own options."""
        from click.shell_completion import CompletionItem

        names = [
            CompletionItem(name, help=COMMANDS[name][2])
            for name in self.list_commands(ctx)
            if name in COMMANDS and name.startswith(incomplete)
        ]
        return names + click.Command.shell_complete(self, ctx, incomplete)


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
