"""How the CLI shows things: tables that read well, and the data for machines in the
format --output asks for (json, yaml, text: fleetrun.cli.formats), --query applied."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetrun.core.inputs import escape_unprintable
from fleetrun.core.targets import Target

# Piped output is not cut to 80 columns: tables keep their rows on one line.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STYLES = {
    "Success": "green",
    "Online": "green",
    "Failed": "red",
    "TimedOut": "red",
    "AccessDenied": "red",
    "Undeliverable": "red",
    "ConnectionLost": "yellow",
    "Cancelled": "yellow",
    "Cancelling": "yellow",
    "Terminated": "yellow",
    "Delayed": "yellow",
    "InProgress": "cyan",
    "Pending": "dim",
}


def status(value: str) -> Text:
    return Text(value, style=STYLES.get(value, ""))


def when(value: datetime | None) -> str:
    """A time with its zone: local by default (`2026-12-03 14:05:09 CET`), UTC with
    --utc; a time without a zone is read as UTC (the server sends UTC)."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    shown = value.astimezone(UTC) if _utc() else value.astimezone()
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z")


def _utc() -> bool:
    """Whether this command was given --utc."""
    import click

    from fleetrun.cli.base import Options

    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Options) if ctx is not None else None
    return bool(found and found.utc)


def ping_status(value: str, last_ping_at: datetime | None) -> Text:
    """A node's ping status; one whose agent never connected is not ConnectionLost."""
    if value == "ConnectionLost" and last_ping_at is None:
        return Text("NeverConnected", style="dim")
    return status(value)


def cut(text: str, width: int) -> str:
    """At most `width` characters, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = (end - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def seconds(value: float) -> str:
    """A time span as people read it: `12s`, `4m05s`, `2h03m`."""
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def shown(value: Any) -> Text:
    """A cell as it may reach a terminal: a name from the server (a node's, a tag) can
    hold escape sequences or line breaks, which are written out as escapes (`\x1b`,
    `\n`) instead of acting on the screen or faking a row."""
    if isinstance(value, Text):
        if value.plain.isprintable():
            return value
        return Text(escape_unprintable(value.plain), style=value.style)
    return Text(escape_unprintable(str(value)))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str) -> None:
    rows = list(rows)
    if not rows:
        err.print(empty)
        return
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=column in ("ID", "NODE", "COMMAND", "STATUS"))
    for row in rows:
        grid.add_row(*(shown(c) for c in row))
    out.print(grid)


def block(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        text = shown(value if value not in (None, "") else "-")
        out.print(Text(f"{key:<{width}}  ", style="bold") + text)


def emit_json(value: Any) -> None:
    """A command's result as data: JSON, YAML or text as --output says, after --query;
    with --query and table output, the query's result as a simple table."""
    from fleetrun.cli import formats

    output, data = _selected(value)
    if output == "table":
        columns, rows = formats.to_rows(data)
        if not columns:
            if data is not None:
                out.print(shown(rows[0][0]))
        elif rows:
            table(columns, rows, empty="")
        return
    writer = {"yaml": formats.to_yaml, "text": formats.to_text}.get(output, formats.to_json)
    sys.stdout.write(writer(data))


def emit_record(value: Any) -> None:
    """One record of a stream (`events tail`), as soon as it comes: a JSON object a line,
    a YAML document, or text lines; flushed, also into a pipe."""
    from fleetrun.cli import formats

    output, data = _selected(value)
    if output == "json":
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    elif output == "yaml":
        sys.stdout.write("---\n" + formats.to_yaml(data))
    else:
        sys.stdout.write(formats.to_text(data, record=True))
    sys.stdout.flush()


def _selected(value: Any) -> tuple[str, Any]:
    """The output format of this command, and its data (plain JSON values) after --query."""
    import click

    from fleetrun.cli import formats
    from fleetrun.cli.base import Options

    # through JSON and back: tuples become lists, every key a string, as json shows them
    data = json.loads(json.dumps(_plain(value), ensure_ascii=False))
    ctx = click.get_current_context(silent=True)
    opts = ctx.find_object(Options) if ctx is not None else None
    if opts is None:
        return "json", data
    if opts.query is not None:
        data = formats.query(data, opts.query)
    return opts.output_format, data


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def tags(value: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"


def targets(value: Iterable[Target]) -> str:
    """Targets as `KEY=V1,V2, KEY=V3`; empty for none."""
    return ", ".join(f"{t.key}={','.join(t.values)}" for t in value)


def raw(text: str) -> None:
    """Script output, exactly as it came."""
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
