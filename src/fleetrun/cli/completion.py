"""`fleetrun completion bash|zsh|fish`: the shell completion script (click's shell
completion), and the completers that ask the server for node ids and names and document
names while the operator types.

A completer asks quietly: a short time-out, no retries, and on any error (no server, no
token, a refusal) it offers nothing rather than printing into the operator's prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from fleetrun.cli.base import options

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from fleetrun.sdk import Client

SHELLS = ("bash", "zsh", "fish")
TIMEOUT_S = 2.0  # a prompt that waits longer feels broken
PROG = "fleetrun"
COMPLETE_VAR = "_FLEETRUN_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish (docs/cli.md: install it)."""
    from click.shell_completion import get_completion_class

    found = get_completion_class(shell)
    assert found is not None  # every name in SHELLS is one of click's
    script = found(ctx.find_root().command, {}, PROG, COMPLETE_VAR).source()
    click.echo(script)


def _quiet_client(ctx: click.Context) -> Client:
    from fleetrun.sdk import Client, config

    opts = options(ctx)
    profile = config.resolve(
        opts.server, opts.token, opts.ca_file, opts.insecure, profile=opts.profile
    )
    return Client(
        profile.server,
        profile.token,
        verify=profile.ca_file or True,
        insecure=profile.insecure,
        http=opts.http,
        timeout_s=TIMEOUT_S,
        retries=0,
    )


def _items(values: Sequence[tuple[str, str | None]], incomplete: str) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    seen: set[str] = set()
    items = []
    for value, help_text in values:
        if value.startswith(incomplete) and value not in seen:
            seen.add(value)
            items.append(CompletionItem(value, help=help_text))
    return items


def nodes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Node names and ids, as the server knows them now."""
    try:
        with _quiet_client(ctx) as client:
            found = client.list_nodes()
    except Exception:  # completion offers nothing rather than an error at the prompt
        return []
    values = [(n.name, n.id) for n in found] + [(n.id, n.name) for n in found]
    return _items(values, incomplete)


def documents(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Document names, built-in ones included."""
    try:
        with _quiet_client(ctx) as client:
            found = client.list_documents()
    except Exception:  # completion offers nothing rather than an error at the prompt
        return []
    return _items([(d.name, d.description or None) for d in found], incomplete)
