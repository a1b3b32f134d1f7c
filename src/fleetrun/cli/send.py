"""`fleetrun send`: run a script or a document on nodes, and show how it went."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from fleetrun.cli import completion, render, targeting
from fleetrun.cli.base import F, api_options, options, read_text
from fleetrun.cli.exits import Exit
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError


def _script(script: str | None, script_file: Path | None, document: str | None) -> str | None:
    """The script from --script TEXT, --script - (stdin) or --script-file FILE."""
    if sum(x is not None for x in (script, script_file, document)) != 1:
        raise ValidationError("Give one of --script, --script-file or --document.")
    if script_file is not None:
        script = read_text(script_file, "script file")
    elif script == "-":
        script = sys.stdin.read()
    if script is not None and not script.strip():
        raise ValidationError("The script is empty: give the commands to run with --script.")
    return script


def _params(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    """--param NAME=VALUE, repeatable; a name given twice makes a list."""
    params: dict[str, list[str]] = defaultdict(list)
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValidationError(f"Parameter {text!r} is malformed: write it as NAME=VALUE.")
        params[name.strip()].append(value)
    return dict(params)


def _secrets(pairs: tuple[str, ...]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            # The text may hold a secret: do not repeat it.
            raise ValidationError("A secret parameter is malformed: write it as NAME=VALUE.")
        secrets[name.strip()] = value
    return secrets


def _document(text: str) -> tuple[str, str | None]:
    name, _, version = text.partition(":")
    return name, version or None


def wait_options(f: F) -> F:
    """--wait-timeout and --unreachable-after: a wait that always ends; --only-failed."""
    f = click.option(
        "--only-failed",
        is_flag=True,
        help="Show the output of the nodes that did not succeed only (the summary counts all).",
    )(f)
    f = click.option(
        "--unreachable-after",
        default=None,
        metavar="DURATION",
        help="Stop waiting for a node still Delayed (offline) this long after the send and "
        "report it unreachable; it is not cancelled (default 60s).",
    )(f)
    return click.option(
        "--wait-timeout",
        default=None,
        metavar="DURATION",
        help="Stop waiting after this long (30s, 5m, 1h); the command keeps running "
        "(default: until it ends or only unreachable nodes are left).",
    )(f)


def wait_limits(
    wait_timeout: str | None, unreachable_after: str | None
) -> tuple[float | None, float]:
    """The two limits of a wait, in seconds, from the operator's DURATION texts."""
    from fleetrun.cli.waiting import DEFAULT_UNREACHABLE_AFTER_S

    timeout_s = None if wait_timeout is None else parse_duration(wait_timeout, "Wait timeout")
    after_s = (
        DEFAULT_UNREACHABLE_AFTER_S
        if unreachable_after is None
        else parse_duration(unreachable_after, "Unreachable-after")
    )
    return timeout_s, after_s


@click.command("send")
@targeting.target_options
@click.option(
    "--script",
    default=None,
    help="A shell script (shorthand for RunShellScript); - reads it from stdin.",
)
@click.option(
    "--script-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file holding the shell script.",
)
@click.option(
    "--document",
    default=None,
    metavar="NAME[:VERSION]",
    help="A document to run.",
    shell_complete=completion.documents,
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A document parameter (repeatable; repeat a name for a list).",
)
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="VALUE",
    help="A positional argument for the script (repeatable), passed as argv.",
)
@click.option(
    "--max-concurrency",
    default=None,
    metavar="N|P%",
    help="At most this many nodes at once (default 50).",
)
@click.option(
    "--max-errors",
    default=None,
    metavar="N|P%",
    help="Stop starting new nodes after more errors than this (default 0).",
)
@click.option(
    "--execution-timeout",
    "--timeout",
    "execution_timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="Run time allowed per node (default 3600, at most 172800).",
)
@click.option(
    "--delivery-timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="A node that has not started by then times out (default 3600, 30-2592000).",
)
@click.option("--run-as", default=None, metavar="USER", help="Run as this user on the nodes.")
@click.option(
    "--secret-param",
    "secret_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A secret environment variable (repeatable): sealed here to each node's key, "
    "never stored in clear, masked as *** in the output.",
)
@click.option("--comment", default=None, help="A note kept with the command (100 characters).")
@click.option("--notify", default=None, metavar="CHANNEL", help="Notify this channel of changes.")
@click.option(
    "--notify-on",
    default=None,
    metavar="STATUSES",
    help="Comma-separated: InProgress, Success, Failed, TimedOut, Cancelled (default all).",
)
@click.option(
    "--notify-type",
    type=click.Choice(["Command", "Invocation"]),
    default=None,
    help="One message per command status change (default), or per node's invocation.",
)
@click.option("--wait", is_flag=True, help="Wait, show progress, then each node's output.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="With --wait: print each node's lines as they arrive, prefixed by its name.",
)
@wait_options
@api_options
@click.pass_context
def send(
    ctx: click.Context,
    nodes: tuple[str, ...],
    tags: tuple[str, ...],
    targets: tuple[str, ...],
    group: str | None,
    all_nodes: bool,
    script: str | None,
    script_file: Path | None,
    document: str | None,
    params: tuple[str, ...],
    args: tuple[str, ...],
    max_concurrency: str | None,
    max_errors: str | None,
    execution_timeout: int | None,
    delivery_timeout: int | None,
    run_as: str | None,
    secret_params: tuple[str, ...],
    comment: str | None,
    notify: str | None,
    notify_on: str | None,
    notify_type: str | None,
    wait: bool,
    follow: bool,
    wait_timeout: str | None,
    unreachable_after: str | None,
    only_failed: bool,
) -> None:
    """Run a script or a document on nodes: print its id, or --wait for the results.

    With --wait: progress, then each node's result and a summary; the wait always ends
    (--wait-timeout, --unreachable-after) and the exit code says how it went. With
    --wait --follow: each node's lines as they arrive, then the summary."""
    opts = options(ctx)
    script = _script(script, script_file, document)
    if not wait and (wait_timeout or unreachable_after or only_failed or follow):
        raise ValidationError(
            "--follow, --wait-timeout, --unreachable-after and --only-failed go with --wait."
        )
    if follow and opts.json:
        raise ValidationError(
            "--follow prints lines as they arrive, not one JSON document: leave out --json "
            "(or follow as JSON lines with fleetrun invocations tail ID --follow --json)."
        )
    wait_timeout_s, unreachable_after_s = wait_limits(wait_timeout, unreachable_after)
    name, version = _document(document) if document else ("RunShellScript", None)
    client = opts.client()
    command = client.send_command(
        script=script,
        document=name,
        document_version=version,
        parameters=_params(params),
        arguments=list(args),
        targets=targeting.build(
            client, nodes=nodes, tags=tags, targets=targets, group=group, all_nodes=all_nodes
        ),
        timeout_s=execution_timeout,
        delivery_timeout_s=delivery_timeout,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        run_as=run_as,
        comment=comment,
        secret_parameters=_secrets(secret_params),
        notification=_notification(notify, notify_on, notify_type),
    )
    if command.target_count == 0:
        # A mistyped tag is the usual cause: say which values the key does have.
        if opts.json:
            render.emit_json(command)
        message = targeting.explain_no_match(client, command.targets)
        render.err.print(f"fleetrun: {message}", markup=False)
        ctx.exit(Exit.USAGE)
    if not wait:
        if opts.json:
            return render.emit_json(command)
        render.out.print(command.id)
        render.err.print(
            f"Sent to {command.target_count} node(s). Follow it with: fleetrun commands show "
            f"{command.id}",
            markup=False,
        )
        return
    from fleetrun.cli.waiting import wait_and_report

    # The id first, whatever happens next (stderr: stdout stays the results').
    render.err.print(
        f"Command {command.id} sent to {command.target_count} node(s); waiting "
        "(Ctrl-C stops the wait, not the command).",
        markup=False,
    )
    ctx.exit(
        wait_and_report(
            client,
            command,
            json=opts.json,
            wait_timeout_s=wait_timeout_s,
            unreachable_after_s=unreachable_after_s,
            only_failed=only_failed,
            follow=follow,
        )
    )


def _notification(
    channel: str | None, statuses: str | None, kind: str | None
) -> dict[str, Any] | None:
    if channel is None:
        if statuses or kind:
            raise ValidationError("--notify-on and --notify-type need --notify CHANNEL.")
        return None
    config: dict[str, Any] = {"channel": channel, "type": kind or "Command"}
    if statuses:
        config["events"] = [s.strip() for s in statuses.split(",") if s.strip()]
    return config
