"""`fleetrun output search` and `fleetrun invocations tail`: stored output searched
across nodes and commands, and one command's output followed as it arrives."""

from __future__ import annotations

import click
from rich.text import Text

from fleetrun.cli import completion, render
from fleetrun.cli.base import api_options, options
from fleetrun.cli.follow import Followers, LinePrinter, colour_wanted, sources_of
from fleetrun.schemas.output import SearchHit

STREAMS = ("stdout", "stderr")


@click.group("output")
@api_options
def output() -> None:
    """Output: search what nodes printed, across commands."""


@output.command("search")
@click.argument("pattern")
@click.option("--regex", is_flag=True, help="PATTERN is a regular expression (Python syntax).")
@click.option("--command", "command_id", default=None, metavar="ID", help="Only this command.")
@click.option(
    "--node",
    "node_ids",
    multiple=True,
    metavar="ID",
    help="Only this node (repeatable).",
    shell_complete=completion.nodes,
)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only nodes with this tag.")
@click.option("--group", default=None, help="Only the members of this node group.")
@click.option("--stream", type=click.Choice(STREAMS), default=None, help="Only this stream.")
@click.option("--since", default=None, help="Stored at or after (ISO 8601, or 24h ago).")
@click.option("--until", default=None, help="Stored before (ISO 8601, or 2h ago).")
@click.option("-C", "--context", type=click.IntRange(0, 20), default=0, help="Lines around each.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", type=int, default=None, help="Go on to older lines (printed after).")
@api_options
@click.pass_context
def search(
    ctx: click.Context,
    pattern: str,
    regex: bool,
    command_id: str | None,
    node_ids: tuple[str, ...],
    tags: tuple[str, ...],
    group: str | None,
    stream: str | None,
    since: str | None,
    until: str | None,
    context: int,
    limit: int,
    cursor: int | None,
) -> None:
    """Find lines of stored output: PATTERN's words in that order, any case, or a
    --regex; newest first, on the nodes you may read."""
    opts = options(ctx)
    page = opts.client().search_output(
        pattern,
        regex=regex,
        command_id=command_id,
        node_ids=node_ids,
        tags=tags,
        group=group,
        stream=stream,
        since=since,
        until=until,
        context=context,
        limit=limit,
        cursor=cursor,
    )
    if opts.json:
        render.emit_json(page.items)
    else:
        _print_hits(page.items, context)
    if page.next_cursor is not None:
        render.err.print(f"More: add --cursor {page.next_cursor}", style="dim", markup=False)


def _print_hits(hits: list[SearchHit], context: int) -> None:
    if not hits:
        render.err.print("No lines match.")
        return
    for hit in hits:
        where = Text(
            f"{hit.node_name or hit.node_id} {hit.command_id} step {hit.step} {hit.stream}",
            style="bold",
        )
        if context:
            render.out.print(where, markup=False)
        first = hit.line_no - len(hit.before)
        lines = [*hit.before, hit.line, *hit.after]
        for no, text in enumerate(lines, start=first):
            mark = ":" if no == hit.line_no else "-"
            label = f"{no}{mark}" if context else f"{hit.node_name or hit.node_id}:{no}:"
            render.out.print(Text(label, style="dim") + Text(" " + text), markup=False)
        if context:
            render.out.print("--", markup=False)


@click.command("tail")
@click.argument("command_id")
@click.argument("node_id", required=False, shell_complete=completion.nodes)
@click.option("--follow", "-f", is_flag=True, help="Keep printing lines as they arrive.")
@click.option("--stream", type=click.Choice(STREAMS), default=None, help="Only this stream.")
@api_options
@click.pass_context
def tail(
    ctx: click.Context, command_id: str, node_id: str | None, follow: bool, stream: str | None
) -> None:
    """Print a command's output, each line prefixed by its node; with --follow, as it
    arrives until every node has finished (re-attach to a running command)."""
    opts = options(ctx)
    client = opts.client()
    sources = sources_of(client, command_id, node_id, (stream,) if stream else STREAMS)
    printer = LinePrinter(sources, as_json=opts.json, colour=colour_wanted())
    if follow:
        Followers(client, printer, sources).start().join()
        return
    for source in sources:
        printer.lines(source, client.iter_output(command_id, source.node_id, source.stream))
