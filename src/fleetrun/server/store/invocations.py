"""Invocations: one command on one node. Their transitions, what agents report about
them (acks, output, states), and how they are read back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fleetrun.core import protocol
from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_node_id, is_uuid
from fleetrun.core.statuses import (
    TERMINAL_INVOCATION,
    InvocationStatus,
    StatusDetail,
    StepStatus,
)
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.base import Page
from fleetrun.server import events
from fleetrun.server.output import (
    STDERR_TAIL_CHARS,
    STDOUT_TAIL_CHARS,
    OutputStore,
    append_tail,
    stream_key,
    tail_text,
)
from fleetrun.server.store.paging import (
    decode_cursor,
    decode_seq_cursor,
    encode_cursor,
    status_clause,
)
from fleetrun.server.store.tables import (
    Command,
    Invocation,
    InvocationStep,
    InvocationTransition,
    NodeTag,
    utcnow,
)


def record_transition(
    session: Session, invocation_id: str, status: str, detail: str, at: datetime
) -> None:
    session.add(
        InvocationTransition(invocation_id=invocation_id, status=status, detail=detail, at=at)
    )


def transition(
    session: Session,
    inv: Invocation,
    status: InvocationStatus,
    detail: StatusDetail | str,
    *,
    refusal: str | None = None,
    **fields: Any,
) -> None:
    """Move an invocation to `status`: recorded as a transition and as an event
    (`refusal`, the agent's reason, makes it a local-policy refusal as well)."""
    now = utcnow()
    inv.status = status.value
    inv.status_detail = str(detail)
    inv.updated_at = now
    if status in TERMINAL_INVOCATION:
        inv.secrets = None  # sealed secrets are kept only while they may still be needed
    for key, value in fields.items():
        setattr(inv, key, value)
    record_transition(session, inv.id, inv.status, inv.status_detail, now)
    events.invocation_changed(session, inv, refusal=refusal)


def read_invocation(session: Session, command_id: str, node_id: str) -> Invocation:
    inv = None
    if is_uuid(command_id) and is_node_id(node_id):
        inv = (
            session.execute(
                select(Invocation).where(
                    Invocation.command_id == command_id, Invocation.node_id == node_id
                )
            )
        ).scalar_one_or_none()
    if inv is None:
        raise NotFoundError(
            f"Command {command_id} has no invocation on node {node_id}; see "
            f"`fleetrun invocations list --command {command_id}`."
        )
    return inv


@dataclass
class InvocationFilter:
    command_id: str | None = None
    node_id: str | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


def read_invocations(
    session: Session,
    filters: InvocationFilter,
    *,
    limit: int = 1000,
    cursor: str | None = None,
) -> tuple[list[Invocation], str | None]:
    """Invocations, a page at a time: a command's ordered by node, otherwise newest
    first. Output is not loaded."""
    by_node = filters.command_id is not None
    query = select(Invocation)
    if by_node:
        query = query.where(Invocation.command_id == filters.command_id).order_by(
            Invocation.seq, Invocation.id
        )
    else:
        query = query.order_by(Invocation.requested_at.desc(), Invocation.id.desc())
    if filters.node_id:
        query = query.where(Invocation.node_id == filters.node_id)
    if filters.status:
        query = query.where(
            status_clause(Invocation.status, Invocation.status_detail, filters.status)
        )
    if filters.since:
        query = query.where(Invocation.requested_at >= filters.since)
    if filters.until:
        query = query.where(Invocation.requested_at < filters.until)
    for key, value in filters.tags.items():
        query = query.where(
            Invocation.node_id.in_(
                select(NodeTag.node_id).where(NodeTag.key == key, NodeTag.value == value)
            )
        )
    if cursor:
        if by_node:
            seq, _, last_id = cursor.partition(":")
            after = decode_seq_cursor(seq)
            query = query.where(
                or_(Invocation.seq > after, and_(Invocation.seq == after, Invocation.id > last_id))
            )
        else:
            at, last_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    Invocation.requested_at < at,
                    and_(Invocation.requested_at == at, Invocation.id < last_id),
                )
            )
    rows = list(session.execute(query.limit(limit + 1)).scalars())
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = (
            f"{last.seq}:{last.id}" if by_node else encode_cursor(last.requested_at, last.id)
        )
    return rows[:limit], next_cursor


def read_page(
    session: Session,
    filters: InvocationFilter,
    *,
    details: bool,
    limit: int,
    cursor: str | None,
    keep: Callable[[Session, list[Invocation]], list[Invocation]] | None = None,
) -> Page[schemas.Invocation]:
    """A page of invocations as the API shows them; with `details`, their steps and
    output tails (never the full output). `keep` drops what the caller may not read."""
    rows, next_cursor = read_invocations(session, filters, limit=limit, cursor=cursor)
    if keep is not None:
        rows = keep(session, rows)
    steps = read_steps_of(session, [r.id for r in rows]) if details else {}
    plans: dict[str, list[dict[str, Any]]] = {}
    if details:
        for command_id in {r.command_id for r in rows}:
            command = session.get(Command, command_id)
            plans[command_id] = list(command.steps) if command else []
    items = [to_schema(r, steps.get(r.id, []), plans.get(r.command_id, [])) for r in rows]
    return Page(items=items, next_cursor=next_cursor)


def read_transitions(session: Session, invocation_id: str) -> list[InvocationTransition]:
    rows = session.execute(
        select(InvocationTransition)
        .where(InvocationTransition.invocation_id == invocation_id)
        .order_by(InvocationTransition.id)
    )
    return list(rows.scalars())


def undeliverable(session: Session, node_id: str) -> set[str]:
    """A node was deleted: what it has not finished ends Undeliverable; the commands touched."""
    rows = session.execute(
        select(Invocation).where(
            Invocation.node_id == node_id,
            Invocation.status.not_in([s.value for s in TERMINAL_INVOCATION]),
        )
    ).scalars()
    touched = set()
    for inv in rows:
        transition(
            session,
            inv,
            InvocationStatus.UNDELIVERABLE,
            StatusDetail.NODE_DELETED,
            ended_at=utcnow(),
            message="The node was deleted (deregistered) before this finished.",
        )
        touched.add(inv.command_id)
    return touched


def too_large(session: Session, sizes: Mapping[str, int]) -> set[str]:
    """Invocations whose invoke frame would be over the agent channel's limit end
    Undeliverable (detail TooLarge) instead of being sent; the commands touched."""
    touched = set()
    for inv in session.execute(select(Invocation).where(Invocation.id.in_(list(sizes)))).scalars():
        if inv.status not in (InvocationStatus.PENDING, InvocationStatus.DELAYED):
            continue
        transition(
            session,
            inv,
            InvocationStatus.UNDELIVERABLE,
            StatusDetail.TOO_LARGE,
            ended_at=utcnow(),
            message=(
                f"Not sent: it is {protocol.mib(sizes[inv.id])} once encoded for the node, over "
                f"the {protocol.mib(protocol.MAX_FRAME_BYTES)} the agent channel carries; make "
                "the script and its parameters smaller (a document step that repeats a large "
                "parameter carries it once per step)."
            ),
        )
        touched.add(inv.command_id)
    return touched


def read_steps(session: Session, invocation_id: str) -> list[InvocationStep]:
    rows = session.execute(
        select(InvocationStep)
        .where(InvocationStep.invocation_id == invocation_id)
        .order_by(InvocationStep.idx)
    )
    return list(rows.scalars())


def read_steps_of(
    session: Session, invocation_ids: Sequence[str]
) -> dict[str, list[InvocationStep]]:
    steps: dict[str, list[InvocationStep]] = {}
    for start in range(0, len(invocation_ids), 500):
        rows = session.execute(
            select(InvocationStep)
            .where(InvocationStep.invocation_id.in_(invocation_ids[start : start + 500]))
            .order_by(InvocationStep.invocation_id, InvocationStep.idx)
        )
        for step in rows.scalars():
            steps.setdefault(step.invocation_id, []).append(step)
    return steps


def deliverable(
    session: Session, node_ids: Sequence[str] | None = None
) -> list[tuple[str, str, str, str, dict[str, Any] | None]]:
    """(invocation id, node id, command id, status, sealed secrets) of every released
    invocation that an agent has not accepted yet, oldest first."""
    query = (
        select(
            Invocation.id,
            Invocation.node_id,
            Invocation.command_id,
            Invocation.status,
            Invocation.secrets,
        )
        .where(
            Invocation.status.in_([InvocationStatus.PENDING, InvocationStatus.DELAYED]),
            Invocation.released_at.is_not(None),
        )
        .order_by(Invocation.requested_at)
    )
    if node_ids is not None:
        query = query.where(Invocation.node_id.in_(node_ids))
    return [(r[0], r[1], r[2], r[3], r[4]) for r in session.execute(query)]


def mark_delayed(session: Session, invocation_ids: Sequence[str]) -> set[str]:
    """Pending invocations whose node is offline become Delayed; the commands touched."""
    if not invocation_ids:
        return set()
    rows = session.execute(
        select(Invocation).where(
            Invocation.id.in_(invocation_ids), Invocation.status == InvocationStatus.PENDING
        )
    )
    commands = set()
    for inv in rows.scalars():
        transition(session, inv, InvocationStatus.DELAYED, StatusDetail.DELAYED)
        commands.add(inv.command_id)
    return commands


def ended_but_running(session: Session, node_id: str, running: set[str]) -> list[str]:
    """Of the invocations an agent says it still runs, those the server has ended
    (cancelled or expired while the node was away): the agent must stop them."""
    if not running:
        return []
    ended = (InvocationStatus.CANCELLED, InvocationStatus.TIMED_OUT, InvocationStatus.UNDELIVERABLE)
    rows = session.execute(
        select(Invocation.id, Invocation.status).where(
            Invocation.node_id == node_id, Invocation.id.in_(list(running))
        )
    )
    return [invocation_id for invocation_id, status in rows if status in ended]


def running_on(session: Session, node_id: str) -> list[Invocation]:
    rows = session.execute(
        select(Invocation).where(
            Invocation.node_id == node_id,
            Invocation.status.in_([InvocationStatus.IN_PROGRESS, InvocationStatus.CANCELLING]),
        )
    )
    return list(rows.scalars())


@dataclass
class Applied:
    """What a batch of agent frames changed."""

    received: dict[str, int] = field(default_factory=dict)  # invocation id -> seq to ack
    commands: set[str] = field(default_factory=set)  # commands whose status may change
    stop: list[str] = field(default_factory=list)  # accepted, but the server already ended it


class FrameApplier:
    """Applies one agent's frames inside one transaction."""

    def __init__(self, session: Session, node_id: str, output: OutputStore) -> None:
        self.session = session
        self.node_id = node_id
        self.output = output
        self.applied = Applied()
        self._invocations: dict[str, Invocation | None] = {}
        self._steps: dict[tuple[str, int], InvocationStep] = {}
        self._commands: dict[str, Command] = {}

    def _invocation(self, invocation_id: str) -> Invocation | None:
        if invocation_id not in self._invocations:
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
        if inv.status not in (InvocationStatus.PENDING, InvocationStatus.DELAYED):
            if frame.accepted and inv.status in TERMINAL_INVOCATION:
                self.applied.stop.append(inv.id)  # cancelled (or expired) on its way: stop it
            return
        if frame.accepted:
            transition(
                self.session,
                inv,
                InvocationStatus.IN_PROGRESS,
                StatusDetail.IN_PROGRESS,
                acked_at=utcnow(),
            )
        else:
            transition(
                self.session,
                inv,
                InvocationStatus.FAILED,
                frame.detail or StatusDetail.BLOCKED_BY_LOCAL_POLICY,
                refusal=frame.reason or "refused by the node's local policy",
                message=frame.reason,
                ended_at=utcnow(),
                acked_at=utcnow(),
            )
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
            step = self.session.get(InvocationStep, (inv.id, idx))
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
        command = self._commands.get(command_id)
        if command is None:
            command = self.session.get(Command, command_id)
            assert command is not None
            self._commands[command_id] = command
        return list(command.steps)

    def _output(self, inv: Invocation, frame: protocol.Output) -> None:
        step = self._step(inv, frame.step)
        data = frame.payload
        key = stream_key(inv.command_id, inv.node_id, frame.step, frame.stream)
        if frame.stream == "stdout":
            self.output.write(key, step.stdout_bytes, data)
            step.stdout_bytes += len(data)
            step.stdout_tail = append_tail(step.stdout_tail, data, STDOUT_TAIL_CHARS)
        else:
            self.output.write(key, step.stderr_bytes, data)
            step.stderr_bytes += len(data)
            step.stderr_tail = append_tail(step.stderr_tail, data, STDERR_TAIL_CHARS)

    def _state(self, inv: Invocation, frame: protocol.State) -> None:
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
            if inv.status in (InvocationStatus.PENDING, InvocationStatus.DELAYED):
                transition(self.session, inv, status, StatusDetail.IN_PROGRESS)
                self.applied.commands.add(inv.command_id)
            return
        if inv.status in TERMINAL_INVOCATION or status not in TERMINAL_INVOCATION:
            return  # the server already decided (a cancel or a deadline won)
        transition(
            self.session,
            inv,
            status,
            frame.detail or status.value,
            exit_code=frame.exit_code,
            started_at=started or inv.started_at,
            ended_at=ended or utcnow(),
            message=frame.message,
        )
        self.applied.commands.add(inv.command_id)


def _time(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def to_schema(
    inv: Invocation,
    steps: list[InvocationStep],
    plan: list[dict[str, Any]],
    transitions: list[InvocationTransition] | None = None,
) -> schemas.Invocation:
    by_idx = {s.idx: s for s in steps}
    results = []
    for idx in range(max(len(plan), max(by_idx, default=-1) + 1)):
        spec = plan[idx] if idx < len(plan) else {}
        results.append(_step_schema(idx, by_idx.get(idx), spec))
    stdout = "".join(r.stdout for r in results)
    stderr = "".join(r.stderr for r in results)
    return schemas.Invocation(
        id=inv.id,
        command_id=inv.command_id,
        node_id=inv.node_id,
        node_name=inv.node_name,
        status=inv.status,
        status_detail=inv.status_detail,
        exit_code=inv.exit_code,
        requested_at=inv.requested_at,
        started_at=inv.started_at,
        ended_at=inv.ended_at,
        message=inv.message,
        stdout=stdout[-STDOUT_TAIL_CHARS:],
        stderr=stderr[-STDERR_TAIL_CHARS:],
        stdout_truncated=any(r.stdout_truncated for r in results)
        or len(stdout) > STDOUT_TAIL_CHARS,
        stderr_truncated=any(r.stderr_truncated for r in results)
        or len(stderr) > STDERR_TAIL_CHARS,
        steps=results,
        transitions=[
            schemas.Transition(status=t.status, detail=t.detail, at=t.at) for t in transitions or []
        ],
    )


def _step_schema(idx: int, step: InvocationStep | None, spec: dict[str, Any]) -> schemas.StepResult:
    if step is None:
        return schemas.StepResult(
            index=idx,
            name=spec.get("name", f"step{idx}"),
            action=spec.get("action", ""),
            status=StepStatus.PENDING,
        )
    stdout, stdout_cut = tail_text(step.stdout_tail, step.stdout_bytes, STDOUT_TAIL_CHARS)
    stderr, stderr_cut = tail_text(step.stderr_tail, step.stderr_bytes, STDERR_TAIL_CHARS)
    return schemas.StepResult(
        index=idx,
        name=step.name,
        action=step.action,
        status=step.status,
        exit_code=step.exit_code,
        started_at=step.started_at,
        ended_at=step.ended_at,
        message=step.message,
        stdout=stdout,
        stderr=stderr,
        stdout_bytes=step.stdout_bytes,
        stderr_bytes=step.stderr_bytes,
        stdout_truncated=stdout_cut,
        stderr_truncated=stderr_cut,
    )
