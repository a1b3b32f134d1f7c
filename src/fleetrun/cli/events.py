"""`fleetrun events list|tail`: what happened, and what is happening."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import click

from fleetrun.cli import render
from fleetrun.cli.audit import parse_since
from fleetrun.cli.base import api_options, options
from fleetrun.cli.files import read_json_file
from fleetrun.core.errors import ConnectionError_, LimitExceededError, ServerError
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
    """Recent events, newest first, with their sequence numbers (for events tail
    --after); --json: EventBridge's envelope and "seq"."""
    opts = options(ctx)
    found = opts.client().list_events(
        since=parse_since(since), detail_type=detail_type, limit=limit
    )
    if opts.json:
        return render.emit_json([{**e.envelope(), "seq": e.seq} for e in found])
    render.table(
        ["SEQ", "TIME", "DETAIL-TYPE", "SUMMARY"],
        ([str(e.seq), e.time, e.detail_type, summary(e)] for e in found),
        empty="No events yet.",
    )


@events.command("tail")
@click.option(
    "--pattern-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Only events matching this event pattern (JSON).",
)
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=None,
    help="Start after this sequence number (the # of a line printed before).",
)
@api_options
@click.pass_context
def tail(ctx: click.Context, pattern_file: Path | None, after: int | None) -> None:
    """Print events as they happen (one JSON object a line with --json; a YAML document
    each with --output yaml), until Ctrl-C.

    Each line starts with the event's sequence number (#N; "seq" with --json): give it
    to --after to resume from there. When the server goes away (a restart), the tail
    says so on stderr, reconnects by itself and resumes after the last event it saw."""
    opts = options(ctx)
    pattern = read_json_file(pattern_file, "pattern") if pattern_file else None
    client = opts.client()
    # Also the check that the server answers and the token may read events: those are
    # errors at the start, not reasons to wait.
    newest = client.list_events(limit=1)
    if after is None:  # "from now", fixed once: a reconnect misses nothing after it
        after = newest[0].seq if newest else 0
    lost = False
    attempt = 0

    def opened() -> None:
        nonlocal lost, attempt
        if lost:
            click.echo("Reconnected.", err=True)
            lost, attempt = False, 0

    while True:
        try:
            for event in client.stream_events(pattern=pattern, after=after, on_open=opened):
                _print(event, opts.json)
                after = max(after, event.seq)
        except (ConnectionError_, ServerError, LimitExceededError) as exc:
            reason = exc.message  # the server away, failing or busy: worth another try
        else:  # the server ended the stream: it is stopping
            reason = "The server closed the stream."
        if not lost:
            lost = True
            click.echo(f"{reason} Reconnecting, to resume after #{after}...", err=True)
        attempt += 1
        time.sleep(reconnect_delay_s(attempt))


def reconnect_delay_s(attempt: int) -> float:
    """0.5 s after the first failure, doubling to 5 s, with up to 25% jitter so that
    many tails do not all come back at the same instant."""
    base = min(5.0, 0.5 * 2.0 ** (attempt - 1))
    return base * (1 + random.random() / 4)


def _print(event: Event, as_data: bool) -> None:
    if as_data:  # --json (a JSON object a line), --output yaml|text, --query
        return render.emit_record({**event.envelope(), "seq": event.seq})
    line = f"#{event.seq}  {event.time}  {event.detail_type}  {summary(event)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # a line as soon as it happens, also into a pipe
