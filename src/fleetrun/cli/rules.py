"""`fleetrun rules ...`: event rules, and trying their patterns out offline."""

from __future__ import annotations

from pathlib import Path

import click

from fleetrun.cli import render
from fleetrun.cli.base import api_options, json_option, options
from fleetrun.cli.files import read_json_file
from fleetrun.core import eventshapes
from fleetrun.core.errors import ValidationError
from fleetrun.core.patterns import compile_pattern

FILE = click.Path(dir_okay=False, path_type=Path)


@click.group("rules")
@api_options
def rules() -> None:
    """Event rules: which events go to which targets."""


@rules.command("test")
@click.option("--pattern-file", type=FILE, required=True, help="The event pattern, JSON (or YAML).")
@click.option("--event-file", type=FILE, required=True, help="One event, JSON (or YAML).")
@click.option(
    "--event-shape",
    type=click.Choice(eventshapes.SHAPES),
    default=eventshapes.FLEETRUN,
    show_default=True,
    help="Match the event as a rule in this shape sees it (aws: as SSM sends it).",
)
@json_option
@click.pass_context
def test(ctx: click.Context, pattern_file: Path, event_file: Path, event_shape: str) -> None:
    """Try a pattern on an event, offline.

    Prints whether the event in --event-file matches the pattern in --pattern-file, and
    exits 0 either way; a file that cannot be read or a pattern that is not valid exits 1.
    With --event-shape aws, a fleetrun event (as `fleetrun events list --json` prints it)
    is first put in SSM's shape, as a rule in that shape would see it.
    """
    pattern = compile_pattern(read_json_file(pattern_file, "pattern"))
    event = read_json_file(event_file, "event")
    if not isinstance(event, dict):
        raise ValidationError(f"The event file {event_file} must hold one JSON object (an event).")
    seen: dict[str, object] | None = event
    if event_shape == eventshapes.AWS and event.get("source") != eventshapes.AWS_SOURCE:
        seen = eventshapes.shaped(event, event_shape)
    match = seen is not None and pattern.matches(seen)
    if options(ctx).json:
        return render.emit_json({"match": match})
    if match:
        render.out.print("matches: the event matches the pattern.", style="green")
    else:
        render.out.print("does not match: the event does not match the pattern.", style="yellow")


# The rules kept on the server: create, list, show, enable, disable, delete,
# deliveries, redrive (fleetrun.cli.rule_admin).
def _add_server_commands() -> None:
    from fleetrun.cli.rule_admin import COMMANDS

    for command in COMMANDS:
        rules.add_command(command)


_add_server_commands()
