"""`fleetrun alarms ...`: alarms on output lines; `fleetrun outputs forwarders`: where
output is forwarded and how far behind it is."""

from __future__ import annotations

import click

from fleetrun.cli import render, targeting
from fleetrun.cli.base import api_options, options
from fleetrun.core.durations import parse_duration


@click.group("alarms")
@api_options
def alarms() -> None:
    """Alarms on output lines: count matching lines per period, OK / ALARM."""


@alarms.command("create")
@click.argument("name")
@click.option("--pattern", required=True, help="Text a line must contain (or --regex).")
@click.option("--regex", is_flag=True, help="The pattern is a regular expression.")
@click.option("--node", "nodes", multiple=True, metavar="ID|NAME", help="Only these nodes.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only nodes tagged so.")
@click.option("--group", default=None, metavar="NAME", help="Only the members of a group.")
@click.option("--document", default=None, metavar="NAME", help="Only output of this document.")
@click.option("--threshold", type=int, required=True, help="Matching lines per period that breach.")
@click.option("--period", required=True, metavar="DURATION", help="Length of a period, e.g. 5m.")
@click.option("--evaluation-periods", type=int, default=1, show_default=True)
@click.option(
    "--treat-missing",
    type=click.Choice(["ok", "breaching", "missing", "ignore"]),
    default="ok",
    show_default=True,
    help="What a period in which the nodes printed nothing means.",
)
@click.option("--description", default=None)
@api_options
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    pattern: str,
    regex: bool,
    nodes: tuple[str, ...],
    tags: tuple[str, ...],
    group: str | None,
    document: str | None,
    threshold: int,
    period: str,
    evaluation_periods: int,
    treat_missing: str,
    description: str | None,
) -> None:
    """Create an alarm: ALARM once --threshold matching lines arrive in each of the last
    --evaluation-periods periods, OK otherwise; each change is an event for rules."""
    opts = options(ctx)
    client = opts.client()
    period_s = parse_duration(period, "Period")
    targets = targeting.named(client, nodes=nodes, tags=tags, group=group)
    alarm = client.create_alarm(
        name,
        pattern=pattern,
        regex=regex,
        targets=targets,
        document_name=document,
        threshold=threshold,
        period=period_s,
        evaluation_periods=evaluation_periods,
        treat_missing=treat_missing,
        description=description,
    )
    if opts.json:
        return render.emit_json(alarm)
    render.out.print(f"Created alarm {alarm.name} ({alarm.state}).")


@alarms.command("list")
@api_options
@click.pass_context
def list_alarms(ctx: click.Context) -> None:
    """List alarms and their states."""
    opts = options(ctx)
    found = opts.client().list_alarms()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "STATE", "PATTERN", "THRESHOLD", "SINCE"],
        (
            [
                a.name,
                a.state,
                a.pattern,
                f">= {a.threshold} per {a.period_s}s x {a.evaluation_periods}",
                render.when(a.state_changed_at),
            ]
            for a in found
        ),
        empty="No alarms: create one with `fleetrun alarms create`.",
    )


@alarms.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show an alarm, its state and why, and its counts per period (newest first)."""
    opts = options(ctx)
    alarm = opts.client().get_alarm(name)
    if opts.json:
        return render.emit_json(alarm)
    render.block(
        [
            ("Alarm", alarm.name),
            ("State", f"{alarm.state} since {render.when(alarm.state_changed_at)}"),
            ("Reason", alarm.state_reason),
            ("Pattern", f"{alarm.pattern}{' (regex)' if alarm.regex else ''}"),
            ("Threshold", f">= {alarm.threshold} matching lines per {alarm.period_s}s"),
            ("Evaluation periods", alarm.evaluation_periods),
            ("Missing data", alarm.treat_missing),
            ("Targets", render.targets(alarm.targets) or "all"),
            ("Document", alarm.document_name or "any"),
        ]
    )
    render.table(
        ["PERIOD", "LINES", "MATCHED"],
        ([render.when(p.period_start), p.lines, p.matched] for p in alarm.datapoints),
        empty="No counts yet.",
    )


@alarms.command("history")
@click.argument("name")
@api_options
@click.pass_context
def history(ctx: click.Context, name: str) -> None:
    """The states an alarm took, newest first."""
    opts = options(ctx)
    items = opts.client().get_alarm_history(name)
    if opts.json:
        return render.emit_json(items)
    render.table(
        ["AT", "FROM", "TO", "REASON"],
        ([render.when(h.at), h.old_state, h.new_state, h.reason] for h in items),
        empty="No changes yet.",
    )


@alarms.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete an alarm and its history."""
    opts = options(ctx)
    opts.client().delete_alarm(name)
    if opts.json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted alarm {name}.")


@click.group("outputs")
@api_options
def outputs() -> None:
    """Output forwarding to log systems."""


@outputs.command("forwarders")
@api_options
@click.pass_context
def forwarders(ctx: click.Context) -> None:
    """The log systems output is forwarded to: lag and the last error of each."""
    opts = options(ctx)
    found = opts.client().list_forwarders()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "DESTINATION", "LAG", "SENT LINES", "LAST OK", "LAST ERROR"],
        (
            [
                f.name,
                f.destination,
                f"{f.lag_chunks} chunks",
                f.sent_lines,
                render.when(f.last_ok_at),
                f"{render.when(f.last_error_at)}: {f.last_error}" if f.last_error else "-",
            ]
            for f in found
        ),
        empty="No forwarders: start the server with --forward-syslog or --forward-otlp.",
    )
