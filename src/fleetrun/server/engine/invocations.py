"""Invocations through their lifecycle: what agents report (acks, output, states),
a node going offline or being deleted, an agent that restarted. Every status through
`moves`; the store (`fleetrun.server.store.invocations`) only reads and maps rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import protocol
from fleetrun.core.lifecycle import AGENT_RESULTS, Happening
from fleetrun.core.statuses import TERMINAL_INVOCATION, InvocationStatus, PingStatus, StepStatus
from fleetrun.server.db import publish
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.engine import moves
from fleetrun.server.output import (
    STDERR_TAIL_CHARS,
    STDOUT_TAIL_CHARS,
    OutputStore,
    append_tail,
    stream_key,
)
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Command, Invocation, InvocationStep, Node, utcnow


def lock_commands_of(session: Session, invocation_ids: Iterable[str]) -> None:
    """Lock the rows of these invocations' commands, in id order, before any of the
    invocations is changed (`engine.commands.lock_commands`)."""
    ids = list(invocation_ids)
    if not ids or session.get_bind().dialect.name == "sqlite":
        return
    commands: set[str] = set()
    for first in range(0, len(ids), engine_commands.LOCK_BATCH):
        chunk = ids[first : first + engine_commands.LOCK_BATCH]
        query = select(Invocation.command_id).where(Invocation.id.in_(chunk)).distinct()
        commands.update(session.execute(query).scalars())
    engine_commands.lock_commands(session, commands)


LOAD_BATCH = 500  # ids per statement when loading a batch's rows


@dataclass
class Loaded:
    """The rows a group commit of agent frames works on, read up front with a few
    set-based statements instead of one lookup per frame."""

    invocations: dict[str, Invocation] = field(default_factory=dict)
    steps: dict[tuple[str, int], InvocationStep] = field(default_factory=dict)
    plans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # command -> steps


def load_batch(session: Session, invocation_ids: Iterable[str]) -> Loaded:
    """Lock the commands of these invocations in id order (`lock_commands_of`), then
    read the invocations, their steps and their commands' step plans: the frames
    applied next find them here."""
    ids = sorted(set(invocation_ids))
    lock_commands_of(session, ids)
    loaded = Loaded()
    for first in range(0, len(ids), LOAD_BATCH):
        chunk = ids[first : first + LOAD_BATCH]
        for inv in session.execute(select(Invocation).where(Invocation.id.in_(chunk))).scalars():
            loaded.invocations[inv.id] = inv
        query = select(InvocationStep).where(InvocationStep.invocation_id.in_(chunk))
        for step in session.execute(query).scalars():
            loaded.steps[(step.invocation_id, step.idx)] = step
    command_ids = sorted({inv.command_id for inv in loaded.invocations.values()})
    for first in range(0, len(command_ids), LOAD_BATCH):
        chunk = command_ids[first : first + LOAD_BATCH]
        query = select(Command.id, Command.steps).where(Command.id.in_(chunk))
        for row in session.execute(query):
            loaded.plans[row.id] = list(row.steps)
    return loaded


def node_deleted(session: Session, node_id: str) -> set[str]:
    """A node was deleted: what it has not finished ends Undeliverable; the commands
    touched. The replica holding its session (maybe another) closes it once this commits."""
    publish(session, "deleted", [node_id])
    rows = list(
        session.execute(
            select(Invocation).where(
                Invocation.node_id == node_id,
                Invocation.status.not_in([s.value for s in TERMINAL_INVOCATION]),
            )
        ).scalars()
    )
    engine_commands.lock_commands(session, {inv.command_id for inv in rows})
    touched = set()
    for inv in rows:
        if moves.move(session, inv, Happening.NODE_DELETED):
            touched.add(inv.command_id)
    return touched


def mark_delayed(session: Session, invocation_ids: Sequence[str]) -> set[str]:
    """Pending invocations whose node is offline become Delayed; the commands touched.
    A node another replica holds (Online) is not offline: that replica delivers."""
    if not invocation_ids:
        return set()
    lock_commands_of(session, invocation_ids)
    rows = session.execute(
        select(Invocation)
        .join(Node, Node.id == Invocation.node_id)
        .where(
            Invocation.id.in_(invocation_ids),
            Invocation.status == InvocationStatus.PENDING,
            Node.ping_status != PingStatus.ONLINE,
        )
    )
    commands = set()
    for inv in rows.scalars():
        if moves.move(session, inv, Happening.NODE_OFFLINE):
            commands.add(inv.command_id)
    return commands


def too_large(session: Session, sizes: Mapping[str, int]) -> set[str]:
    """Invocations whose invoke frame would be over the agent channel's limit end
    Undeliverable (detail TooLarge) instead of being sent; the commands touched."""
    touched = set()
    lock_commands_of(session, list(sizes))
    for inv in session.execute(select(Invocation).where(Invocation.id.in_(list(sizes)))).scalars():
        message = (
            f"Not sent: it is {protocol.mib(sizes[inv.id])} once encoded for the node, over "
            f"the {protocol.mib(protocol.MAX_FRAME_BYTES)} the agent channel carries; make "
            "the script and its parameters smaller (a document step that repeats a large "
            "parameter carries it once per step)."
        )
        if moves.move(session, inv, Happening.TOO_LARGE, message=message):
            touched.add(inv.command_id)
    return touched


def agents_hello(
    session: Session, hellos: Sequence[tuple[str, set[str]]]
) -> tuple[list[list[str]], set[str]]:
    """Agents said hello (node id, the invocations it still runs), one or many at once.
    What an agent runs but the server has ended (or is cancelling) must be stopped;
    what the server thinks it runs but it no longer knows failed (AgentRestarted:
    never run twice). Returns what each must be told to stop, in order, and the
    commands touched. The invocations on all their nodes are read in one statement
    per chunk of nodes, and their commands locked together, in one order."""
    node_ids = [node_id for node_id, _ in hellos]
    on_nodes: dict[str, list[Invocation]] = {}
    for first in range(0, len(node_ids), LOAD_BATCH):
        chunk = node_ids[first : first + LOAD_BATCH]
        for inv in invocation_store.running_on_nodes(session, chunk):
            on_nodes.setdefault(inv.node_id, []).append(inv)
    engine_commands.lock_commands(
        session,
        {
            inv.command_id
            for node_id, running in hellos
            for inv in on_nodes.get(node_id, ())
            if inv.id not in running
        },
    )
    stops, changed = [], set()
    for node_id, running in hellos:
        stop, touched = _hello(session, node_id, running, on_nodes.get(node_id, []))
        stops.append(stop)
        changed |= touched
    return stops, changed


def _hello(
    session: Session, node_id: str, running: set[str], on_node: list[Invocation]
) -> tuple[list[str], set[str]]:
    stop = invocation_store.ended_but_running(session, node_id, running)
    changed = set()
    for inv in on_node:
        if inv.id in running:
            if inv.status == InvocationStatus.CANCELLING:
                stop.append(inv.id)  # the cancel may not have reached it
            continue
        if moves.move(session, inv, Happening.AGENT_FORGOT):
            changed.add(inv.command_id)
    return stop, changed


@dataclass(frozen=True)
class StoredOutput:
    """A chunk of output stored: bytes [offset, offset + size) of one step's stream."""

    invocation_id: str
    command_id: str
    node_id: str
    step: int
    stream: str
    offset: int
    size: int


@dataclass
class Applied:
    """What a batch of agent frames changed."""

    received: dict[str, int] = field(default_factory=dict)  # invocation id -> seq to ack
    commands: set[str] = field(default_factory=set)  # commands whose status may change
    stop: list[str] = field(default_factory=list)  # accepted, but the server already ended it
    output_bytes: int = 0  # of output stored (not counting frames sent again)
    outputs: set[str] = field(default_factory=set)  # whose output or state changed
    # The chunks of output stored, in order: the output log notes them in the same
    # transaction, and after the commit their readers are woken (state.output_stored).
    stored: list[StoredOutput] = field(default_factory=list)

    @property
    def grown(self) -> set[tuple[str, int, str]]:
        """The streams stored to: (invocation, step, stream)."""
        return {(c.invocation_id, c.step, c.stream) for c in self.stored}


class FrameApplier:
    """Applies one agent's frames inside one transaction. With `loaded` (`load_batch`
    over every invocation the frames name) it reads nothing more row by row."""

    def __init__(
        self,
        session: Session,
        node_id: str,
        output: OutputStore,
        loaded: Loaded | None = None,
    ) -> None:
        self.session = session
        self.node_id = node_id
        self.output = output
        self.applied = Applied()
        self._loaded = loaded
        self._invocations: dict[str, Invocation | None] = {}
        self._steps: dict[tuple[str, int], InvocationStep] = loaded.steps if loaded else {}
        self._plans: dict[str, list[dict[str, Any]]] = loaded.plans if loaded else {}

    def _invocation(self, invocation_id: str) -> Invocation | None:
        if invocation_id not in self._invocations:
            if self._loaded is not None:
                inv = self._loaded.invocations.get(invocation_id)
            else:
                inv = self.session.get(Invocation, invocation_id)
            # An agent may speak only of its own invocations.
            self._invocations[invocation_id] = (
                inv if inv is not None and inv.node_id == self.node_id else None
            )
        return self._invocations[invocation_id]

    def ack(self, frame: protocol.Ack) -> None:
        inv = self._invocation(frame.invocation_id)
        if inv is None:
            return
        if frame.accepted and inv.status in TERMINAL_INVOCATION:
            self.applied.stop.append(inv.id)  # cancelled (or expired) on its way: stop it
            return
        now = utcnow()
        if frame.accepted:
            moved = moves.move(self.session, inv, Happening.ACCEPTED, at=now, acked_at=now)
        else:
            moved = moves.move(
                self.session,
                inv,
                Happening.REFUSED,
                detail=frame.detail,
                message=frame.reason,
                refusal=frame.reason or "refused by the node's local policy",
                at=now,
                acked_at=now,
            )
        if moved is not None:
            self.applied.commands.add(inv.command_id)

    def numbered(self, frame: protocol.Output | protocol.State) -> None:
        inv = self._invocation(frame.invocation_id)
        if inv is None:
            # Not ours or gone: acknowledge so the agent stops sending it.
            self.applied.received[frame.invocation_id] = frame.seq
            return
        if frame.seq == inv.last_seq + 1:
            if isinstance(frame, protocol.Output):
                self._output(inv, frame)
            else:
                self._state(inv, frame)
            inv.last_seq = frame.seq
        self.applied.received[inv.id] = inv.last_seq

    def _step(self, inv: Invocation, idx: int) -> InvocationStep:
        key = (inv.id, idx)
        step = self._steps.get(key)
        if step is None:
            # Loaded with its invocation: a step not among them does not exist yet.
            step = None if self._loaded else self.session.get(InvocationStep, (inv.id, idx))
            if step is None:
                plan = self._plan(inv.command_id)
                spec = plan[idx] if idx < len(plan) else {}
                step = InvocationStep(
                    invocation_id=inv.id,
                    idx=idx,
                    name=spec.get("name", f"step{idx}"),
                    action=spec.get("action", "runShellScript"),
                    status=StepStatus.PENDING,
                    stdout_bytes=0,
                    stderr_bytes=0,
                    stdout_tail=b"",
                    stderr_tail=b"",
                )
                self.session.add(step)
            self._steps[key] = step
        return step

    def _plan(self, command_id: str) -> list[dict[str, Any]]:
        plan = self._plans.get(command_id)
        if plan is None:
            command = self.session.get(Command, command_id)
            assert command is not None
            plan = self._plans[command_id] = list(command.steps)
        return plan

    def _output(self, inv: Invocation, frame: protocol.Output) -> None:
        step = self._step(inv, frame.step)
        data = frame.payload
        key = stream_key(inv.command_id, inv.node_id, frame.step, frame.stream)
        self.applied.output_bytes += len(data)
        offset = step.stdout_bytes if frame.stream == "stdout" else step.stderr_bytes
        self.applied.stored.append(
            StoredOutput(
                inv.id, inv.command_id, inv.node_id, frame.step, frame.stream, offset, len(data)
            )
        )
        self.applied.outputs.add(inv.id)
        if frame.stream == "stdout":
            self.output.write(key, step.stdout_bytes, data)
            step.stdout_bytes += len(data)
            step.stdout_tail = append_tail(step.stdout_tail, data, STDOUT_TAIL_CHARS)
        else:
            self.output.write(key, step.stderr_bytes, data)
            step.stderr_bytes += len(data)
            step.stderr_tail = append_tail(step.stderr_tail, data, STDERR_TAIL_CHARS)

    def _state(self, inv: Invocation, frame: protocol.State) -> None:
        self.applied.outputs.add(inv.id)  # a follower of its output learns it ended
        started = _time(frame.started_at)
        ended = _time(frame.ended_at)
        if frame.step is not None:
            step = self._step(inv, frame.step)
            step.status = frame.status
            step.exit_code = frame.exit_code if frame.exit_code is not None else step.exit_code
            step.started_at = started or step.started_at
            step.ended_at = ended or step.ended_at
            step.message = frame.message or step.message
            return
        status = InvocationStatus(frame.status)
        if status == InvocationStatus.IN_PROGRESS:
            inv.started_at = started or inv.started_at
            if moves.move(self.session, inv, Happening.STARTED):
                self.applied.commands.add(inv.command_id)
            return
        if status not in AGENT_RESULTS:
            return  # not a result an agent may report
        # A terminal invocation stays: the server already decided (a cancel or a
        # deadline won).
        if moves.move(
            self.session,
            inv,
            Happening.FINISHED,
            result=status,
            detail=frame.detail,
            message=frame.message,
            exit_code=frame.exit_code,
            started_at=started or inv.started_at,
            ended_at=ended or utcnow(),
        ):
            self.applied.commands.add(inv.command_id)


def _time(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
