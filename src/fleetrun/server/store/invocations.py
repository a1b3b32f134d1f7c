"""Invocations: one command on one node. Their transitions, what agents report about
them (acks, output, states), and how they are read back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_node_id, is_uuid
from fleetrun.core.statuses import (
    InvocationStatus,
    PingStatus,
    StepStatus,
)
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.output import (
    STDERR_TAIL_CHARS,
    STDOUT_TAIL_CHARS,
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
    Node,
    NodeTag,
)


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
    session: Session, node_ids: Sequence[str] | None = None, *, replica_id: str | None = None
) -> list[tuple[str, str, str, str, dict[str, Any] | None]]:
    """(invocation id, node id, command id, status, sealed secrets) of every released
    invocation that an agent has not accepted yet, oldest first. With `replica_id`, only
    those this replica may act on: of the nodes it holds, and of the nodes no replica
    holds (to be marked Delayed); another replica's are that replica's to deliver."""
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
    if replica_id is not None:
        query = query.join(Node, Node.id == Invocation.node_id).where(
            or_(
                Node.replica_id == replica_id,
                Node.replica_id.is_(None),
                Node.ping_status != PingStatus.ONLINE,
            )
        )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in session.execute(query)]


def cancelling(session: Session) -> list[tuple[str, str]]:
    """(node id, invocation id) of every invocation an agent was asked to stop and has
    not confirmed: few at a time, looked up by status."""
    rows = session.execute(
        select(Invocation.node_id, Invocation.id).where(
            Invocation.status == InvocationStatus.CANCELLING
        )
    )
    return [(r[0], r[1]) for r in rows]


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


def running_on_nodes(session: Session, node_ids: Sequence[str]) -> list[Invocation]:
    """What these nodes run (InProgress or Cancelling), in one statement."""
    rows = session.execute(
        select(Invocation).where(
            Invocation.node_id.in_(list(node_ids)),
            Invocation.status.in_([InvocationStatus.IN_PROGRESS, InvocationStatus.CANCELLING]),
        )
    )
    return list(rows.scalars())


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
        output_expired_at=inv.output_expired_at,
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
