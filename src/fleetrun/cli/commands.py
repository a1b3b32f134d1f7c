"""`fleetrun commands ...` and `fleetrun invocations ...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from fleetrun.cli import completion, render
from fleetrun.cli.base import F, api_options, options
from fleetrun.cli.output import tail
from fleetrun.cli.send import wait_limits, wait_options
from fleetrun.cli.waiting import counts_text
from fleetrun.core.errors import ValidationError
from fleetrun.core.ids import is_node_id
from fleetrun.core.inputs import escape_unprintable
from fleetrun.core.tags import parse_tags
from fleetrun.schemas.commands import Invocation

SHOW_INVOCATIONS = 50


def _filters(f: F) -> F:
    f = click.option("--until", default=None, help="Before this time (ISO 8601, or 2h ago).")(f)
    f = click.option("--since", default=None, help="At or after this time (ISO 8601, or 2h ago).")(
        f
    )
    f = click.option(
        "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only where nodes have this tag."
    )(f)
    f = click.option(
        "--node",
        "node_id",
        default=None,
        metavar="ID",
        help="Only this node.",
        shell_complete=completion.nodes,
    )(f)
    f = click.option(
        "--status",
        default=None,
        help="A status (Failed, TimedOut...) or a detail (DeliveryTimedOut...).",
    )(f)
    return f


@click.group("commands")
@api_options
def commands() -> None:
    """Commands: list, show, wait, cancel."""


@commands.command("list")
@_filters
@click.option(
    "--document",
    default=None,
    help="Only commands of this document.",
    shell_complete=completion.documents,
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="The next page (printed after a full page).")
@api_options
@click.pass_context
def list_commands(
    ctx: click.Context,
    status: str | None,
    node_id: str | None,
    tags: tuple[str, ...],
    since: str | None,
    until: str | None,
    document: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List commands, newest first."""
    opts = options(ctx)
    page = opts.client().list_commands_page(
        status=status,
        document=document,
        node_id=node_id,
        tags=parse_tags(tags),
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    if opts.json:  # a list is an array of its items: the cursor goes to stderr
        render.emit_json(page.items)
        return _more(page.next_cursor)
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
            for c in page.items
        ),
        empty="No commands match.",
    )
    _more(page.next_cursor)


def _more(cursor: str | None) -> None:
    if cursor:
        render.err.print(f"More: add --cursor {cursor}", style="dim", markup=False)


@commands.command("show")
@click.argument("command_id")
@api_options
@click.pass_context
def show_command(ctx: click.Context, command_id: str) -> None:
    """Show a command and, node by node, where it stands."""
    opts = options(ctx)
    client = opts.client()
    command = client.get_command(command_id)
    page = client.list_invocations_page(command_id=command_id, limit=SHOW_INVOCATIONS)
    if opts.json:
        return render.emit_json({"command": command, "invocations": page.items})
    detail = f" ({command.status_detail})" if command.status_detail != command.status else ""
    render.block(
        [
            ("Command", command.id),
            ("Status", render.status(command.status) + Text(detail)),
            (
                "Document",
                f"{command.document_name}"
                + (f" version {command.document_version}" if command.document_version else ""),
            ),
            ("Targets", render.targets(command.targets)),
            (
                "Progress",
                f"{command.completed_count}/{command.target_count} done, "
                f"{command.error_count} error(s)",
            ),
            ("Counts", counts_text(command.counts, command.status)),
            (
                "Limits",
                f"max concurrency {command.max_concurrency} ({command.concurrency_limit}), "
                f"max errors {command.max_errors} ({command.error_threshold})",
            ),
            (
                "Timeouts",
                f"delivery {command.delivery_timeout_s}s, execution {command.execution_timeout_s}s",
            ),
            ("Run as", command.run_as or "the agent's user"),
            ("Requested", f"{render.when(command.requested_at)} by {command.principal or '-'}"),
            ("Comment", command.comment),
        ]
    )
    render.out.print()
    invocation_table(page.items)
    if page.next_cursor:
        render.err.print(
            f"Showing the first {SHOW_INVOCATIONS}; all of them: fleetrun invocations list "
            f"--command {command_id}",
            style="dim",
            markup=False,
        )


@commands.command("wait")
@click.argument("command_id")
@wait_options
@api_options
@click.pass_context
def wait_command(
    ctx: click.Context,
    command_id: str,
    wait_timeout: str | None,
    unreachable_after: str | None,
    only_failed: bool,
) -> None:
    """Wait for a command already sent (as send --wait does): progress, then each node's
    result; the exit code says how it went."""
    from fleetrun.cli.waiting import wait_and_report

    opts = options(ctx)
    wait_timeout_s, unreachable_after_s = wait_limits(wait_timeout, unreachable_after)
    client = opts.client()
    command = client.get_command(command_id)
    ctx.exit(
        wait_and_report(
            client,
            command,
            json=opts.json,
            wait_timeout_s=wait_timeout_s,
            unreachable_after_s=unreachable_after_s,
            only_failed=only_failed,
        )
    )


@commands.command("cancel")
@click.argument("command_id")
@click.option(
    "--node",
    "node_ids",
    multiple=True,
    metavar="ID",
    help="Only on this node (repeatable).",
    shell_complete=completion.nodes,
)
@api_options
@click.pass_context
def cancel_command(ctx: click.Context, command_id: str, node_ids: tuple[str, ...]) -> None:
    """Cancel a command: what has not started is Cancelled at once, what runs is stopped."""
    opts = options(ctx)
    command = opts.client().cancel_command(command_id, list(node_ids) or None)
    if opts.json:
        return render.emit_json(command)
    render.out.print(
        Text("Cancel requested: ")
        + render.status(command.status)
        + Text(f" · {counts_text(command.counts, command.status)}")
    )


def invocation_table(invocations: list[Invocation], *, with_command: bool = False) -> None:
    columns = ["NODE", "NAME", "STATUS", "DETAIL", "EXIT", "STARTED", "TOOK"]
    if with_command:
        columns.insert(0, "COMMAND")
    rows = []
    for i in invocations:
        row = [
            i.node_id,
            i.node_name or "-",
            render.status(i.status),
            i.status_detail if i.status_detail != i.status else "",
            "-" if i.exit_code is None else i.exit_code,
            render.when(i.started_at),
            render.duration(i.started_at, i.ended_at),
        ]
        if with_command:
            row.insert(0, i.command_id)
        rows.append(row)
    render.table(columns, rows, empty="No invocations match.")


@click.group("invocations")
@api_options
def invocations() -> None:
    """Invocations: one command on one node."""


invocations.add_command(tail)


@invocations.command("list")
@click.option("--command", "command_id", default=None, help="Only this command's.")
@_filters
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", default=None, help="The next page (printed after a full page).")
@api_options
@click.pass_context
def list_invocations(
    ctx: click.Context,
    command_id: str | None,
    status: str | None,
    node_id: str | None,
    tags: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List invocations: one command's by node, or all, newest first."""
    opts = options(ctx)
    page = opts.client().list_invocations_page(
        command_id=command_id,
        node_id=node_id,
        status=status,
        tags=parse_tags(tags),
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    if opts.json:  # a list is an array of its items: the cursor goes to stderr
        render.emit_json(page.items)
        return _more(page.next_cursor)
    invocation_table(page.items, with_command=command_id is None)
    _more(page.next_cursor)


@invocations.command("show")
@click.argument("command_id")
@click.argument("node_id", shell_complete=completion.nodes)
@click.option("--full", is_flag=True, help="The whole stdout and stderr, not just their ends.")
@api_options
@click.pass_context
def show_invocation(ctx: click.Context, command_id: str, node_id: str, full: bool) -> None:
    """Show one invocation: status, steps, and its output (the end of it, or --full)."""
    opts = options(ctx)
    client = opts.client()
    inv = client.get_invocation(command_id, node_id)
    if opts.json:
        data = inv.model_dump(mode="json")
        if full:
            for stream in ("stdout", "stderr"):
                data[stream] = client.get_output(command_id, node_id, stream).decode(
                    "utf-8", "replace"
                )
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
    if len(inv.steps) > 1:
        render.out.print()
        render.table(
            ["STEP", "ACTION", "STATUS", "EXIT", "TOOK", "MESSAGE"],
            (
                [
                    s.name,
                    s.action,
                    render.status(s.status),
                    "-" if s.exit_code is None else s.exit_code,
                    render.duration(s.started_at, s.ended_at),
                    s.message or "",
                ]
                for s in inv.steps
            ),
            empty="",
        )
    if inv.output_expired_at is not None:
        render.out.print(
            f"\nOutput: expired on {render.when(inv.output_expired_at)} "
            "(the server's output retention deleted it)."
        )
        return
    for stream in ("stdout", "stderr"):
        render.out.print(f"\n{stream}:", style="bold")
        if not full:
            render.raw(getattr(inv, stream))
            if getattr(inv, f"{stream}_truncated"):
                render.err.print("(the end only; all of it: add --full)", style="dim")
            continue
        last = b""
        for chunk in client.iter_output(command_id, node_id, stream):
            sys.stdout.buffer.write(chunk)
            last = chunk
        if last and not last.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()


@invocations.command("download")
@click.argument("command_id")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write NODE.stdout and NODE.stderr for every node.",
)
@api_options
@click.pass_context
def download(ctx: click.Context, command_id: str, directory: Path) -> None:
    """Save the full output of every node: one file per node and stream."""
    opts = options(ctx)
    client = opts.client()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    found = client.list_invocations(command_id)
    for inv in found:  # a node id becomes a file name: it must stay inside the directory
        if not is_node_id(inv.node_id):
            raise ValidationError(
                f"The server named a node {escape_unprintable(inv.node_id)!r}, which is not a "
                "node id (n- and 17 hex digits): nothing was written; check the server."
            )
    for inv in found:
        for stream in ("stdout", "stderr"):
            path = directory / f"{inv.node_id}.{stream}"
            size = 0
            with path.open("wb") as fh:
                for chunk in client.iter_output(command_id, inv.node_id, stream):
                    fh.write(chunk)
                    size += len(chunk)
            written.append(
                {"node_id": inv.node_id, "stream": stream, "path": str(path), "bytes": size}
            )
    if opts.json:
        return render.emit_json(written)
    total = sum(int(w["bytes"]) for w in written)
    render.out.print(f"Wrote {len(written)} file(s), {total} bytes, to {directory}.")
