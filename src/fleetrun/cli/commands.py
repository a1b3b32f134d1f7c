"""`fleetrun send`, `fleetrun commands ...`, `fleetrun invocations ...`."""

from __future__ import annotations

import sys
from collections import defaultdict

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from fleetrun.cli import render
from fleetrun.cli.base import api_options, options
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tag
from fleetrun.core.targets import Target, parse_target
from fleetrun.schemas.commands import Command, Invocation
from fleetrun.sdk import Client

ORDER = [
    "Success",
    "Failed",
    "TimedOut",
    "Cancelled",
    "Terminated",
    "Undeliverable",
    "AccessDenied",
    "InProgress",
    "Cancelling",
    "Delayed",
    "Pending",
]


def _tag_targets(tags: tuple[str, ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for text in tags:
        key, value = parse_tag(text)
        grouped[key].append(value)
    return dict(grouped)


@click.command("send")
@click.option("--node", "node_ids", multiple=True, metavar="ID", help="A node id (repeatable).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Nodes with this tag (repeatable; values of one key are ORed, keys ANDed).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="FILTER",
    help="tag:KEY=V1,V2 | tag-key:KEY | all (repeatable, ANDed).",
)
@click.option("--all", "all_nodes", is_flag=True, help="Every node.")
@click.option("--script", required=True, help="The shell script to run.")
@click.option(
    "--timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="Execution timeout per node (default 3600).",
)
@click.option("--comment", default=None, help="A note kept with the command (100 characters).")
@click.option("--wait", is_flag=True, help="Wait, show progress, then each node's output.")
@api_options
@click.pass_context
def send(
    ctx: click.Context,
    node_ids: tuple[str, ...],
    tags: tuple[str, ...],
    targets: tuple[str, ...],
    all_nodes: bool,
    script: str,
    timeout: int | None,
    comment: str | None,
    wait: bool,
) -> None:
    """Run a script on nodes and print the command id (or, with --wait, the results)."""
    opts = options(ctx)
    if not (node_ids or tags or targets or all_nodes):
        raise ValidationError(
            "Say where to run: --node ID, --tag KEY=VALUE, --target tag:KEY=VALUE, or --all."
        )
    if not script.strip():
        raise ValidationError("The script is empty: give the commands to run with --script.")
    parsed: list[Target] = [parse_target(t) for t in targets]
    client = opts.client()
    command = client.send_command(
        script=script,
        node_ids=list(node_ids),
        tags=_tag_targets(tags),
        targets=parsed,
        all_nodes=all_nodes,
        timeout_s=timeout,
        comment=comment,
    )
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
    command = _wait_with_progress(client, command)
    invocations = client.list_invocations(command.id, details=True)
    if opts.json:
        render.emit_json({"command": command, "invocations": invocations})
    else:
        _print_results(command, invocations)
    if command.status != "Success":
        ctx.exit(1)


def counts_text(command: Command) -> str:
    parts = [f"{status} {command.counts[status]}" for status in ORDER if command.counts.get(status)]
    return " · ".join(parts) or command.status


def _wait_with_progress(client: Client, command: Command) -> Command:
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=render.err, transient=True) as progress:
        task = progress.add_task(
            counts_text(command), total=max(command.target_count, 1), status=command.status
        )

        def update(latest: Command) -> None:
            progress.update(
                task,
                completed=latest.completed_count,
                total=max(latest.target_count, 1),
                description=counts_text(latest),
                status=latest.status,
            )

        return client.wait(command.id, on_update=update)


def _print_results(command: Command, invocations: list[Invocation]) -> None:
    for inv in invocations:
        header = Text(f"── {inv.node_name or inv.node_id} ({inv.node_id}) ", style="bold")
        header += render.status(inv.status)
        if inv.status_detail not in (inv.status, "Success"):
            header += Text(f" ({inv.status_detail})")
        header += Text(f" · exit {inv.exit_code if inv.exit_code is not None else '-'}")
        header += Text(f" · {render.duration(inv.started_at, inv.ended_at)}")
        render.out.print(header)
        if inv.message:
            render.out.print(inv.message, style="yellow", markup=False)
        if inv.stdout:
            render.raw(inv.stdout)
        if inv.stderr:
            render.out.print("stderr:", style="red")
            render.raw(inv.stderr)
        if inv.stdout_truncated or inv.stderr_truncated:
            render.err.print(
                f"(output cut; all of it: fleetrun invocations show {command.id} {inv.node_id})",
                style="dim",
                markup=False,
            )
    summary = counts_text(command)
    style = "green" if command.status == "Success" else "red"
    if command.target_count == 0:
        render.err.print("No node matched the targets: nothing ran.", style="red")
    else:
        render.out.print(
            Text(f"{command.status}", style=style)
            + Text(f" on {command.target_count} node(s): {summary}")
        )


@click.group("commands")
@api_options
def commands() -> None:
    """Commands: list them, show one."""


@commands.command("list")
@click.option("--status", default=None, help="Only commands with this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@api_options
@click.pass_context
def list_commands(ctx: click.Context, status: str | None, limit: int) -> None:
    """List recent commands, newest first."""
    opts = options(ctx)
    found = opts.client().list_commands(status=status, limit=limit)
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["ID", "DOCUMENT", "STATUS", "DONE", "ERRORS", "REQUESTED", "COMMENT"],
        (
            [
                c.id,
                c.document_name,
                render.status(c.status),
                f"{c.completed_count}/{c.target_count}",
                c.error_count,
                render.when(c.requested_at),
                c.comment or "",
            ]
            for c in found
        ),
        empty="No commands yet: send one with `fleetrun send`.",
    )


@commands.command("show")
@click.argument("command_id")
@api_options
@click.pass_context
def show_command(ctx: click.Context, command_id: str) -> None:
    """Show a command and where it stands on each node."""
    opts = options(ctx)
    client = opts.client()
    command = client.get_command(command_id)
    invocations = client.list_invocations(command_id)
    if opts.json:
        return render.emit_json({"command": command, "invocations": invocations})
    detail = f" ({command.status_detail})" if command.status_detail != command.status else ""
    render.block(
        [
            ("Command", command.id),
            ("Status", render.status(command.status) + Text(detail)),
            ("Document", command.document_name),
            ("Targets", ", ".join(f"{t.key}={','.join(t.values)}" for t in command.targets)),
            (
                "Progress",
                f"{command.completed_count}/{command.target_count} done, "
                f"{command.error_count} error(s)",
            ),
            ("Counts", counts_text(command)),
            ("Requested", f"{render.when(command.requested_at)} by {command.principal or '-'}"),
            ("Comment", command.comment),
        ]
    )
    render.out.print()
    _invocation_table(invocations)


def _invocation_table(invocations: list[Invocation]) -> None:
    render.table(
        ["NODE", "NAME", "STATUS", "DETAIL", "EXIT", "STARTED", "TOOK"],
        (
            [
                i.node_id,
                i.node_name or "-",
                render.status(i.status),
                i.status_detail if i.status_detail != i.status else "",
                "-" if i.exit_code is None else i.exit_code,
                render.when(i.started_at),
                render.duration(i.started_at, i.ended_at),
            ]
            for i in invocations
        ),
        empty="This command has no invocations: its targets matched no node.",
    )


@click.group("invocations")
@api_options
def invocations() -> None:
    """Invocations: one command on one node."""


@invocations.command("list")
@click.option("--command", "command_id", required=True, help="The command id.")
@click.option("--status", default=None, help="Only invocations with this status.")
@api_options
@click.pass_context
def list_invocations(ctx: click.Context, command_id: str, status: str | None) -> None:
    """List the invocations of a command."""
    opts = options(ctx)
    found = opts.client().list_invocations(command_id, status=status)
    if opts.json:
        return render.emit_json(found)
    _invocation_table(found)


@invocations.command("show")
@click.argument("command_id")
@click.argument("node_id")
@api_options
@click.pass_context
def show_invocation(ctx: click.Context, command_id: str, node_id: str) -> None:
    """Show one invocation with its full stdout and stderr."""
    opts = options(ctx)
    client = opts.client()
    inv = client.get_invocation(command_id, node_id)
    if opts.json:
        data = inv.model_dump(mode="json")
        for stream in ("stdout", "stderr"):
            data[stream] = client.get_output(command_id, node_id, stream).decode("utf-8", "replace")
            data[f"{stream}_truncated"] = False
        return render.emit_json(data)
    render.block(
        [
            ("Command", inv.command_id),
            ("Node", f"{inv.node_name or '-'} ({inv.node_id})"),
            (
                "Status",
                render.status(inv.status)
                + Text(f" ({inv.status_detail})" if inv.status_detail != inv.status else ""),
            ),
            ("Exit code", inv.exit_code),
            ("Started", render.when(inv.started_at)),
            ("Ended", render.when(inv.ended_at)),
            ("Took", render.duration(inv.started_at, inv.ended_at)),
            ("Message", inv.message),
        ]
    )
    for stream in ("stdout", "stderr"):
        render.out.print(f"\n{stream}:", style="bold")
        last = b""
        for chunk in client.iter_output(command_id, node_id, stream):
            sys.stdout.buffer.write(chunk)
            last = chunk
        if last and not last.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
