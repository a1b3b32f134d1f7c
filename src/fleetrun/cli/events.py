"""`fleetrun events list|tail`: what happened, and what is happening."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fleetrun.cli import render
from fleetrun.cli.audit import parse_since
from fleetrun.cli.base import api_options, options
from fleetrun.cli.files import read_json_file
from fleetrun.schemas.events import Event


def summary(event: Event) -> str:
    """The few fields that say what happened."""
    detail = event.detail
    keys = ("status", "ping-status", "action", "reason", "command-id", "node-id", "principal")
    parts = [f"{k}={detail[k]}" for k in keys if detail.get(k) not in (None, "")]
    return " ".join(parts)


@click.group("events")
@api_options
def events() -> None:
    """The event log: every status change, node change, refusal and denial."""


@events.command("list")
@click.option("--since", default=None, help="A duration (1h, 7d) or a time (ISO 8601).")
@click.option("--detail-type", default=None, help="Only this detail-type.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@api_options
@click.pass_context
def list_events(ctx: click.Context, since: str | None, detail_type: str | None, limit: int) -> None:
    """Recent events, newest first (--json: EventBridge's envelope)."""
    opts = options(ctx)
    found = opts.client().list_events(
        since=parse_since(since), detail_type=detail_type, limit=limit
    )
    if opts.json:
        return render.emit_json([e.envelope() for e in found])
    render.table(
        ["TIME", "DETAIL-TYPE", "SUMMARY"],
        ([e.time, e.detail_type, summary(e)] for e in found),
        empty="No events yet.",
    )


@events.command("tail")
@click.option(
    "--pattern-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only events matching this event pattern (JSON).",
)
@click.option("--after", type=int, default=None, help="Start after this sequence number.")
@api_options
@click.pass_context
def tail(ctx: click.Context, pattern_file: Path | None, after: int | None) -> None:
    """Print events as they happen (one JSON object a line with --json), until Ctrl-C."""
    opts = options(ctx)
    pattern = read_json_file(pattern_file, "pattern") if pattern_file else None
    for event in opts.client().stream_events(pattern=pattern, after=after):
        if opts.json:
            line = json.dumps(event.envelope())
        else:
            line = f"{event.time}  {event.detail_type}  {summary(event)}"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # a line as soon as it happens, also into a pipe
