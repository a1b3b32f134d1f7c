"""Output as it arrives, from several nodes at once: each node's lines prefixed by its
name (`web01 | `, and `web01 ! ` for stderr), coloured per node on a terminal and plain
when piped; or, as data, one JSON object per line.

One thread per node and stream reads the server's live stream (`iter_output(...,
follow=True)`), which resumes where it stopped when a connection drops; lines are
printed whole, one at a time, as each arrives."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from fleetrun.cli import render
from fleetrun.core.errors import FleetrunError

if TYPE_CHECKING:
    from fleetrun.sdk import Client

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
MARK = {"stdout": "|", "stderr": "!"}


@dataclass(frozen=True)
class Source:
    """One node's stream of one command."""

    command_id: str
    node_id: str
    name: str
    stream: str


class LinePrinter:
    """Prints whole lines of many sources, one at a time."""

    def __init__(self, sources: Sequence[Source], *, as_json: bool, colour: bool) -> None:
        self.as_json = as_json
        self.colour = colour
        width = max((len(s.name) for s in sources), default=0)
        self._prefix = {s: f"{s.name:<{width}} {MARK[s.stream]} " for s in sources}
        nodes = sorted({s.node_id for s in sources})
        self._style = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(nodes)}
        self._lock = threading.Lock()
        self.count = 0  # lines printed

    def lines(self, source: Source, chunks: Iterable[bytes]) -> None:
        """Print each whole line of `chunks` as it completes, and what is left at the end."""
        pending = b""
        for chunk in chunks:
            pending += chunk
            *whole, pending = pending.split(b"\n")
            for line in whole:
                self.line(source, line)
        if pending:
            self.line(source, pending)

    def line(self, source: Source, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace").rstrip("\r")
        with self._lock:
            self.count += 1
            if self.as_json:
                record = {
                    "command_id": source.command_id,
                    "node_id": source.node_id,
                    "node_name": source.name,
                    "stream": source.stream,
                    "line": text,
                }
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
            elif self.colour:
                prefix = Text(self._prefix[source], style=self._style[source.node_id])
                render.out.print(prefix + Text(text), markup=False, highlight=False)
            else:
                sys.stdout.write(self._prefix[source] + text + "\n")
                sys.stdout.flush()


class Followers:
    """Threads that print the sources' output, as it is stored, until each has ended."""

    def __init__(self, client: Client, printer: LinePrinter, sources: Sequence[Source]) -> None:
        self.client = client
        self.printer = printer
        self.errors: list[FleetrunError] = []
        self._threads = [
            threading.Thread(target=self._run, args=(s,), daemon=True, name=f"follow-{s.name}")
            for s in sources
        ]

    def start(self) -> Followers:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, source: Source) -> None:
        try:
            self.printer.lines(source, self._chunks(source))
        except FleetrunError as exc:
            self.errors.append(exc)

    def _chunks(self, source: Source) -> Iterator[bytes]:
        return self.client.iter_output(
            source.command_id, source.node_id, source.stream, follow=True
        )

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for every stream to end, `timeout_s` at most in all (not per stream);
        the first error a stream met is raised."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        if self.errors:
            raise self.errors[0]


def sources_of(
    client: Client, command_id: str, node_id: str | None, streams: Sequence[str]
) -> list[Source]:
    """The command's invocations (or the one on `node_id`), each stream of each."""
    if node_id is not None:
        found = [client.get_invocation(command_id, node_id)]
    else:
        found = client.list_invocations(command_id)
    return [
        Source(command_id, inv.node_id, inv.node_name or inv.node_id, stream)
        for inv in found
        for stream in streams
    ]


def colour_wanted() -> bool:
    return bool(render.out.is_terminal and not render.out.no_color)
