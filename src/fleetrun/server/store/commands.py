"""Commands: creation (documents, targets, invocations in one transaction), reading,
and the aggregate status derived from the invocations."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, load_only

from fleetrun.core import documents, targets
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.ids import is_uuid, new_uuid
from fleetrun.core.statuses import (
    CommandStatus,
    InvocationStatus,
    StatusDetail,
    summarize,
)
from fleetrun.schemas import commands as schemas
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.invocations import record_transition
from fleetrun.server.store.tables import Command, Invocation, Node, utcnow


def create_command(
    session: Session, body: schemas.CommandCreate, *, principal: str | None
) -> Command:
    content = documents.BUILTIN_DOCUMENTS.get(body.document_name)
    if content is None:
        raise NotFoundError(
            f"No document {body.document_name!r} exists; see `fleetrun documents list`."
        )
    params = documents.bind_parameters(content, body.parameters)
    steps = documents.resolve_steps(content, params)
    if not any(step.script.strip() for step in steps):
        raise ValidationError("The script is empty: give the commands to run.")
    execution_timeout_s = _execution_timeout(body.execution_timeout_s)
    wanted = targets.check(list(body.targets))
    candidates = node_store.candidates(session, wanted)
    node_ids = targets.select(wanted, candidates)
    now = utcnow()
    command = Command(
        id=new_uuid(),
        document_name=body.document_name,
        document_version=body.document_version,
        parameters=body.parameters,
        targets=[t.model_dump() for t in wanted],
        steps=[s.model_dump(exclude_none=True) for s in steps],
        comment=body.comment,
        principal=principal,
        requested_at=now,
        expires_at=now
        + timedelta(seconds=schemas.DEFAULT_DELIVERY_TIMEOUT_S + execution_timeout_s),
        execution_timeout_s=execution_timeout_s,
        delivery_timeout_s=schemas.DEFAULT_DELIVERY_TIMEOUT_S,
        max_concurrency="100%",
        max_errors="0",
        error_threshold=0,
        status=CommandStatus.PENDING,
        status_detail=StatusDetail.PENDING,
        counts={},
        version=0,
        updated_at=now,
    )
    session.add(command)
    session.flush()
    names = _names(session, node_ids)
    invocations = [
        Invocation(
            id=new_uuid(),
            command_id=command.id,
            node_id=node_id,
            node_name=names.get(node_id),
            status=InvocationStatus.PENDING,
            status_detail=StatusDetail.PENDING,
            requested_at=now,
            released_at=now,
            last_seq=0,
            updated_at=now,
        )
        for node_id in node_ids
    ]
    session.add_all(invocations)
    session.flush()
    for inv in invocations:
        record_transition(session, inv.id, inv.status, inv.status_detail, now)
    refresh_command(session, command.id)
    return command


def _execution_timeout(value: int | None) -> int:
    if value is None:
        return schemas.DEFAULT_EXECUTION_TIMEOUT_S
    if not 1 <= value <= schemas.MAX_EXECUTION_TIMEOUT_S:
        raise ValidationError(
            f"Execution timeout {value}s is out of range: give 1 to "
            f"{schemas.MAX_EXECUTION_TIMEOUT_S} seconds."
        )
    return value


def _names(session: Session, node_ids: list[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for start in range(0, len(node_ids), 500):
        rows = session.execute(
            select(Node.id, Node.name).where(Node.id.in_(node_ids[start : start + 500]))
        )
        names.update((node_id, name) for node_id, name in rows)
    return names


def read_command(session: Session, command_id: str) -> Command:
    command = session.get(Command, command_id) if is_uuid(command_id) else None
    if command is None:
        raise NotFoundError(
            f"No command {command_id} exists; list commands with `fleetrun commands list`."
        )
    return command


def read_commands(
    session: Session,
    *,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Command], str | None]:
    query = select(Command).order_by(Command.requested_at.desc(), Command.id.desc())
    if status:
        query = query.where(Command.status == status)
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(
            or_(
                Command.requested_at < at,
                and_(Command.requested_at == at, Command.id < last_id),
            )
        )
    rows = list((session.execute(query.limit(limit + 1))).scalars())
    next_cursor = (
        encode_cursor(rows[limit - 1].requested_at, rows[limit - 1].id)
        if len(rows) > limit
        else None
    )
    return rows[:limit], next_cursor


def encode_cursor(at: datetime, last_id: str) -> str:
    raw = json.dumps([at.isoformat(), last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
        return datetime.fromisoformat(at), str(last_id)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "The cursor is not valid: pass the next_cursor of the previous page unchanged."
        ) from exc


def refresh_command(session: Session, command_id: str) -> bool:
    """Recompute a command's status and counts from its invocations; True if changed.

    The command row is locked first, so concurrent updates of its invocations are
    counted one after the other and none is lost."""
    command = session.execute(
        select(Command)
        .options(load_only(*_SUMMARY_COLUMNS))
        .where(Command.id == command_id)
        .with_for_update()
    ).scalar_one()
    rows = session.execute(
        select(Invocation.status, Invocation.status_detail, func.count())
        .where(Invocation.command_id == command_id)
        .group_by(Invocation.status, Invocation.status_detail)
    )
    pairs = itertools.chain.from_iterable(
        itertools.repeat((status, detail), count) for status, detail, count in rows
    )
    summary = summarize(pairs, error_threshold=command.error_threshold)
    new = {
        "status": summary.status.value,
        "status_detail": summary.detail.value,
        "target_count": summary.target_count,
        "completed_count": summary.completed_count,
        "error_count": summary.error_count,
        "delivery_timed_out_count": summary.delivery_timed_out_count,
        "counts": summary.counts,
    }
    if all(getattr(command, k) == v for k, v in new.items()):
        return False
    for key, value in new.items():
        setattr(command, key, value)
    command.version += 1
    command.updated_at = utcnow()
    return True


_SUMMARY_COLUMNS = (
    Command.error_threshold,
    Command.status,
    Command.status_detail,
    Command.target_count,
    Command.completed_count,
    Command.error_count,
    Command.delivery_timed_out_count,
    Command.counts,
    Command.version,
    Command.updated_at,
)


def to_schema(command: Command) -> schemas.Command:
    return schemas.Command(
        id=command.id,
        document_name=command.document_name,
        document_version=command.document_version,
        parameters=command.parameters,
        targets=[targets.Target(**t) for t in command.targets],
        comment=command.comment,
        principal=command.principal,
        requested_at=command.requested_at,
        expires_at=command.expires_at,
        execution_timeout_s=command.execution_timeout_s,
        status=command.status,
        status_detail=command.status_detail,
        target_count=command.target_count,
        completed_count=command.completed_count,
        error_count=command.error_count,
        delivery_timed_out_count=command.delivery_timed_out_count,
        counts=command.counts,
        version=command.version,
    )
