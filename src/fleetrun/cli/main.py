"""The `fleetrun` command: every subcommand, and the one place errors are shown."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

import click

from fleetrun import __version__
from fleetrun.cli import render
from fleetrun.cli.access import policies, policy, principals, roles, tokens, whoami
from fleetrun.cli.audit import audit
from fleetrun.cli.base import Options, api_options, describe_decode_error, describe_os_error
from fleetrun.cli.channels import channels
from fleetrun.cli.commands import commands, invocations
from fleetrun.cli.documents import documents
from fleetrun.cli.events import events
from fleetrun.cli.groups import groups
from fleetrun.cli.keys import keys
from fleetrun.cli.nodes import activations, nodes
from fleetrun.cli.rules import rules
from fleetrun.cli.runcommands import run_command
from fleetrun.cli.send import send
from fleetrun.cli.serve import login, server
from fleetrun.core.errors import FleetrunError

if TYPE_CHECKING:
    import httpx


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fleetrun")
@api_options
def cli() -> None:
    """fleetrun: run scripts and documents on your fleet, no SSH, no inbound port."""


for command in (
    server,
    login,
    whoami,
    send,
    commands,
    invocations,
    documents,
    groups,
    run_command,
    keys,
    nodes,
    activations,
    principals,
    tokens,
    policies,
    roles,
    policy,
    audit,
    events,
    rules,
    channels,
):
    cli.add_command(command)


def _fail(message: str) -> NoReturn:
    render.err.print(f"fleetrun: {message}", markup=False, highlight=False)
    sys.exit(1)


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None) -> None:
    """The entry point. `http` sends every API request through that client (the SDK's
    transport seam: the tests drive an in-process server with it)."""
    try:
        result = cli.main(
            args=argv, prog_name="fleetrun", standalone_mode=False, obj=Options(http=http)
        )
    except click.exceptions.Abort:
        render.err.print("Aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FleetrunError as exc:
        _fail(exc.message)
    # The safety net for files and values the commands read without a sentence of their
    # own: the operator sees what was wrong, never a traceback.
    except UnicodeDecodeError as exc:
        _fail(describe_decode_error(exc))
    except OSError as exc:
        _fail(describe_os_error(exc))
    except ValueError as exc:
        _fail(f"A value given is not valid ({exc}): check the options and files given.")
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
