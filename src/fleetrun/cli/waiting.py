"""Waiting for a command (`send --wait`, `commands wait ID`): progress while it runs,
then each node's result and a summary that says how many nodes did not succeed.

A wait always ends. It ends when the command is finished; when every node still
unfinished is an offline node that has been `Delayed` for `--unreachable-after` (or is
queued behind such nodes), which are then reported as unreachable, like Salt's "did not
return" and Ansible's UNREACHABLE, but not cancelled: they still run if they connect
before the delivery deadline; or when `--wait-timeout` passes. The decisions are pure
functions of what the server said (`unfinished`, `unreachable`, `verdict`); `watch` is
the loop that asks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from fleetrun.cli import render
from fleetrun.cli.exits import Exit
from fleetrun.schemas.commands import Command, Invocation
from fleetrun.sdk import Client

DEFAULT_UNREACHABLE_AFTER_S = 60.0
LONG_POLL_S = 20.0
SETTLE_S = 1.0  # how long a "nothing can move" state must hold before the wait ends
DELAYED_SHOWN = 8  # Delayed nodes named in the progress display; the rest are counted

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
NOT_FINISHED = frozenset({"Pending", "Delayed", "InProgress", "Cancelling"})
RUNNING = frozenset({"InProgress", "Cancelling"})


class Ending(StrEnum):
    FINISHED = "finished"  # the command reached a final status
    UNREACHABLE = "unreachable"  # all that was left waited on offline nodes
    TIMEOUT = "timeout"  # --wait-timeout passed


@dataclass
class Watched:
    """How a wait ended, and the command as last seen."""

    command: Command
    ending: Ending
    unreachable: list[Invocation] = field(default_factory=list)


FOLLOW_DRAIN_S = 10.0  # a finished command's streams end within this long


def counts_text(counts: dict[str, int], fallback: str = "") -> str:
    parts = [f"{status} {counts[status]}" for status in ORDER if counts.get(status)]
    parts += [f"{s} {n}" for s, n in sorted(counts.items()) if s not in ORDER and n]
    return " · ".join(parts) or fallback


def unfinished(command: Command) -> int:
    return sum(n for status, n in command.counts.items() if status in NOT_FINISHED)


def waited_s(invocation: Invocation, now: datetime) -> float:
    """How long a node has been waiting for this command (since it was sent)."""
    return max(0.0, (now - invocation.requested_at).total_seconds())


def unreachable(delayed: Iterable[Invocation], now: datetime, after_s: float) -> list[Invocation]:
    return [i for i in delayed if i.status == "Delayed" and waited_s(i, now) >= after_s]


def stuck(command: Command, late: Sequence[Invocation]) -> bool:
    """Nothing can move until an offline node connects: nothing runs, and every node
    released to run is one reported unreachable (those still Pending wait for their
    slots, which the unreachable ones hold)."""
    if command.done or not late or any(command.counts.get(s) for s in RUNNING):
        return False
    return len(late) == command.counts.get("Delayed", 0)


def watch(
    client: Client,
    command_id: str,
    *,
    wait_timeout_s: float | None,
    unreachable_after_s: float,
    on_update: Callable[[Command, list[Invocation]], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Watched:
    """Follow the command until it finishes, is stuck on unreachable nodes, or
    `wait_timeout_s` passes; `on_update` sees the command and its Delayed invocations."""
    deadline = None if wait_timeout_s is None else time.monotonic() + wait_timeout_s
    command = client.get_command(command_id)
    while True:
        delayed = (
            client.list_invocations(command_id, status="Delayed")
            if command.counts.get("Delayed")
            else []
        )
        if on_update:
            on_update(command, delayed)
        if command.done:
            return Watched(command, Ending.FINISHED)
        now = clock()
        late = unreachable(delayed, now, unreachable_after_s)
        if stuck(command, late):
            # Hold on for a moment: a node that just finished may free a slot for one
            # that is Pending, or a Delayed node may be connecting right now.
            settled = client.get_command(command_id, wait_s=SETTLE_S, version=command.version)
            if settled.version == command.version:
                return Watched(command, Ending.UNREACHABLE, late)
            command = settled
            continue
        remaining = LONG_POLL_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return Watched(command, Ending.TIMEOUT, late)
        wake_s = min(LONG_POLL_S, remaining)
        if delayed:  # wake when the next one becomes unreachable, and keep times fresh
            next_late = min(unreachable_after_s - waited_s(i, now) for i in delayed)
            wake_s = min(wake_s, max(next_late, 0.1), 2.0)
        command = client.get_command(command_id, wait_s=max(wake_s, 0.1), version=command.version)


# -- progress on a terminal ----------------------------------------------------------------


class _Progress(Progress):
    """A progress bar with, under it, the nodes that are Delayed (offline) and for how
    long they have waited; redrawn several times a second, so the times tick."""

    def __init__(self, *columns: ProgressColumn | str, unreachable_after_s: float, **kw: Any):
        self.delayed: list[Invocation] = []
        self.unreachable_after_s = unreachable_after_s
        super().__init__(*columns, **kw)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.delayed:
            yield delayed_line(self.delayed, datetime.now(UTC), self.unreachable_after_s)


def delayed_line(delayed: Sequence[Invocation], now: datetime, after_s: float) -> Text:
    """`Delayed (offline): web01 1m05s (unreachable), web02 12s, ... and 3 more`."""
    line = Text("Delayed (offline): ", style="yellow")
    for index, inv in enumerate(delayed[:DELAYED_SHOWN]):
        if index:
            line += Text(", ")
        waited = waited_s(inv, now)
        line += render.shown(inv.node_name or inv.node_id)
        line += Text(f" {render.seconds(waited)}")
        if waited >= after_s:
            line += Text(" (unreachable)", style="red")
    if len(delayed) > DELAYED_SHOWN:
        line += Text(f", ... and {len(delayed) - DELAYED_SHOWN} more")
    return line


def watch_with_progress(
    client: Client, command: Command, *, wait_timeout_s: float | None, unreachable_after_s: float
) -> Watched:
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    progress = _Progress(
        *columns, console=render.err, transient=True, unreachable_after_s=unreachable_after_s
    )
    with progress:
        task = progress.add_task(
            counts_text(command.counts, command.status),
            total=max(command.target_count, 1),
            status=command.status,
        )

        def update(latest: Command, delayed: list[Invocation]) -> None:
            progress.delayed = delayed
            progress.update(
                task,
                completed=latest.completed_count,
                total=max(latest.target_count, 1),
                description=counts_text(latest.counts, latest.status),
                status=latest.status,
            )

        return watch(
            client,
            command.id,
            wait_timeout_s=wait_timeout_s,
            unreachable_after_s=unreachable_after_s,
            on_update=update,
        )


# -- the results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the wait comes to: how many nodes did what, and the exit code."""

    total: int
    succeeded: int
    failed: list[Invocation]  # ended in anything but Success
    unreachable: list[Invocation]  # still Delayed, reported unreachable
    running: list[Invocation]  # not finished and not unreachable
    counts: dict[str, int]
    exit: Exit


def verdict(invocations: Sequence[Invocation], watched: Watched) -> Verdict:
    """The summary of a wait from each node's status: every end but Success is a
    failure (AccessDenied and Undeliverable too); a failure outranks a wait that ran out,
    which outranks unreachable nodes."""
    late = {i.id for i in watched.unreachable}
    failed = [i for i in invocations if i.status not in NOT_FINISHED and i.status != "Success"]
    unreached = [i for i in invocations if i.id in late and i.status == "Delayed"]
    running = [i for i in invocations if i.status in NOT_FINISHED and i.id not in late]
    if not invocations:
        code = Exit.USAGE  # the targets matched no node: nothing ran
    elif failed:
        code = Exit.FAILED
    elif watched.ending is Ending.TIMEOUT and (running or unreached):
        code = Exit.WAIT_TIMEOUT
    elif unreached or running:
        code = Exit.NODES_UNREACHABLE if watched.ending is Ending.UNREACHABLE else Exit.FAILED
    else:
        code = Exit.OK
    return Verdict(
        total=len(invocations),
        succeeded=sum(1 for i in invocations if i.status == "Success"),
        failed=failed,
        unreachable=unreached,
        running=running,
        counts=dict(Counter(i.status for i in invocations)),
        exit=code,
    )


def summary_line(v: Verdict) -> Text:
    """`Success on 3 node(s)`, `Failed on 1 of 2 node(s): Success 1 · Failed 1`."""
    counts = counts_text(v.counts)
    if not v.total:
        return Text("No node matched the targets: nothing ran.", style="red")
    if v.exit is Exit.OK:
        return Text("Success", style="green") + Text(f" on {v.total} node(s): {counts}")
    parts = []
    if v.failed:
        parts.append(f"failed on {len(v.failed)}")
    if v.unreachable:
        parts.append(f"unreachable on {len(v.unreachable)}")
    if v.running:
        parts.append(f"not finished on {len(v.running)}")
    text = ", ".join(parts)
    return Text(text[:1].upper() + text[1:], style="red") + Text(f" of {v.total} node(s): {counts}")


NAMED = 20  # nodes named per status in the summary; the rest are counted


def print_summary(v: Verdict, command_id: str, unreachable_after_s: float) -> None:
    """The summary line, then the nodes that did not succeed, by status."""
    render.out.print(summary_line(v))
    by_status: dict[str, list[Invocation]] = {}
    for inv in v.failed:
        by_status.setdefault(inv.status, []).append(inv)
    for status in sorted(by_status, key=lambda s: ORDER.index(s) if s in ORDER else 99):
        _name_nodes(render.status(status), by_status[status])
    if v.unreachable:
        label = Text("Unreachable", style="red")
        label += Text(f" (offline, Delayed over {render.seconds(unreachable_after_s)})")
        _name_nodes(label, v.unreachable)
    if v.running:
        _name_nodes(Text("Not finished"), v.running)
    if v.unreachable or v.running:
        render.err.print(
            f"Command {command_id} keeps running: the nodes left still run it if they connect "
            f"before its delivery deadline. Follow it: fleetrun commands wait {command_id} · "
            f"stop it: fleetrun commands cancel {command_id}",
            markup=False,
        )


def _name_nodes(label: Text, invocations: Sequence[Invocation]) -> None:
    line = Text("  ") + label + Text(": ")
    for index, inv in enumerate(invocations[:NAMED]):
        line += Text(", " if index else "") + render.shown(
            f"{inv.node_name or '-'} ({inv.node_id})"
        )
    if len(invocations) > NAMED:
        line += Text(f", ... and {len(invocations) - NAMED} more")
    render.out.print(line)


def _outcome(inv: Invocation) -> tuple[object, ...]:
    """What two nodes must share for their results to be shown once."""
    steps = tuple((s.name, s.status, s.exit_code, s.stdout, s.stderr) for s in inv.steps)
    return (
        inv.status,
        inv.status_detail,
        inv.exit_code,
        inv.message,
        inv.stdout,
        inv.stderr,
        steps if len(inv.steps) > 1 else (),
    )


def print_results(
    command_id: str, invocations: Sequence[Invocation], *, only_failed: bool = False
) -> None:
    """Each outcome once: nodes whose status, exit code and output are the same share
    one header (`── 48 nodes: web01, web02, ... Success · exit 0`), then the output;
    multi-step documents show each step's output under a step marker."""
    groups: dict[tuple[object, ...], list[Invocation]] = {}
    for inv in invocations:
        if only_failed and inv.status == "Success":
            continue
        groups.setdefault(_outcome(inv), []).append(inv)
    for same in groups.values():
        _print_group(command_id, same)


def _print_group(command_id: str, same: Sequence[Invocation]) -> None:
    inv = same[0]
    if len(same) == 1:
        header = Text("── ", style="bold") + render.shown(f"{inv.node_name or inv.node_id}")
        header += Text(f" ({inv.node_id}) ", style="bold")
    else:
        names = ", ".join(i.node_name or i.node_id for i in same[:NAMED])
        more = f", ... and {len(same) - NAMED} more" if len(same) > NAMED else ""
        header = Text(f"── {len(same)} nodes: ", style="bold")
        header += render.shown(names + more) + Text(" ")
    header += render.status(inv.status)
    if inv.status_detail not in (inv.status, "Success"):
        header += Text(f" ({inv.status_detail})")
    header += Text(f" · exit {inv.exit_code if inv.exit_code is not None else '-'}")
    if len(same) == 1:
        header += Text(f" · {render.duration(inv.started_at, inv.ended_at)}")
    render.out.print(header)
    if inv.message:
        render.out.print(inv.message, style="yellow", markup=False)
    if len(inv.steps) > 1:
        for step in inv.steps:
            marker = Text(f"▸ step {step.index + 1}/{len(inv.steps)} ", style="bold")
            marker += render.shown(step.name) + Text(f" ({step.action}) ")
            marker += render.status(step.status)
            marker += Text(f" · exit {step.exit_code if step.exit_code is not None else '-'}")
            render.out.print(marker)
            _print_streams(step.stdout, step.stderr)
    else:
        _print_streams(inv.stdout, inv.stderr)
    if inv.stdout_truncated or inv.stderr_truncated:
        render.err.print(
            f"(output cut; all of it: fleetrun invocations show {command_id} {inv.node_id})",
            style="dim",
            markup=False,
        )


def _print_streams(stdout: str, stderr: str) -> None:
    if stdout:
        render.raw(stdout)
    if stderr:
        render.out.print("stderr:", style="red")
        render.raw(stderr)


def wait_and_report(
    client: Client,
    command: Command,
    *,
    json: bool,
    wait_timeout_s: float | None,
    unreachable_after_s: float,
    only_failed: bool = False,
    follow: bool = False,
) -> Exit:
    """Wait (with progress on a terminal), print each node's result and the summary (or
    the JSON of all of it), and return the exit code. Ctrl-C stops the wait, not the
    command, and says how to come back to it. With `follow`, each node's lines are
    printed as they arrive instead of the progress and the results."""
    try:
        if follow:
            watched = _watch_following(client, command, wait_timeout_s, unreachable_after_s)
        else:
            watched = watch_with_progress(
                client,
                command,
                wait_timeout_s=wait_timeout_s,
                unreachable_after_s=unreachable_after_s,
            )
        invocations = client.list_invocations(command.id, details=True)
    except KeyboardInterrupt:
        render.err.print(
            f"Stopped waiting; command {command.id} keeps running. Follow it: fleetrun "
            f"commands wait {command.id} · cancel it: fleetrun commands cancel {command.id}",
            markup=False,
        )
        return Exit.INTERRUPTED
    result = verdict(invocations, watched)
    if json:
        render.emit_json(
            {
                "command": watched.command,
                "invocations": invocations,
                "wait": {
                    "ended": watched.ending.value,
                    "unreachable_after_s": unreachable_after_s,
                    "unreachable": [i.node_id for i in result.unreachable],
                    "not_finished": [i.node_id for i in result.running],
                    "failed": [i.node_id for i in result.failed],
                    "exit_code": int(result.exit),
                },
            }
        )
    else:
        if not follow:
            print_results(command.id, invocations, only_failed=only_failed)
        print_summary(result, command.id, unreachable_after_s)
    return result.exit


def _watch_following(
    client: Client, command: Command, wait_timeout_s: float | None, unreachable_after_s: float
) -> Watched:
    """Print every node's lines as they arrive while the command is watched; once it has
    ended, wait for what the streams still carry (those of nodes still running, after a
    wait that ran out, are left)."""
    from fleetrun.cli.follow import Followers, LinePrinter, colour_wanted, sources_of

    sources = sources_of(client, command.id, None, ("stdout", "stderr"))
    printer = LinePrinter(sources, as_json=False, colour=colour_wanted())
    followers = Followers(client, printer, sources).start()
    watched = watch(
        client, command.id, wait_timeout_s=wait_timeout_s, unreachable_after_s=unreachable_after_s
    )
    followers.join(FOLLOW_DRAIN_S if watched.ending is Ending.FINISHED else 0.5)
    return watched
