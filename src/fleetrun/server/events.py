"""Emitting events: in the transaction of the change that caused them.

    from fleetrun.server import events
    events.emit(session, events.NODE_REGISTRATION, [frn("node", node.id)], {"node-id": ...})

`emit` queues the event on the session; just before the transaction commits, every
event it gathered is written in one batch insert (a group commit of agent frames that
moves a thousand invocations costs one more statement, not a thousand). An event row
is also the outbox entry: the outbox (fleetrun.server.outbox) routes unrouted events
to the rules and notifications that want them. If the transaction rolls back, its
events go with it: nothing is announced that did not happen.

Invocation and command changes are noted cheaply where they happen
(`invocation_changed`, `command_changed`) and turned into SSM-shaped events at commit,
with the command's fields read once per command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, SessionTransaction

from fleetrun.core import access
from fleetrun.core.events import (
    API_CALL_DENIED,
    COMMAND_STATUS,
    INVOCATION_STATUS,
    LOCAL_POLICY_REFUSAL,
    NODE_DEREGISTRATION,
    NODE_REGISTRATION,
    NODE_STATUS,
    RUN_COMMAND_STATE,
    command_detail,
    invocation_detail,
)
from fleetrun.core.ids import new_uuid
from fleetrun.server.store.tables import Command, Event, Invocation, utcnow

__all__ = [
    "API_CALL_DENIED",
    "COMMAND_STATUS",
    "INVOCATION_STATUS",
    "LOCAL_POLICY_REFUSAL",
    "NODE_DEREGISTRATION",
    "NODE_REGISTRATION",
    "NODE_STATUS",
    "RUN_COMMAND_STATE",
    "command_changed",
    "emit",
    "invocation_changed",
    "on_committed",
    "run_command_changed",
]

_EVENTS = "fleetrun.events"
_INVOCATIONS = "fleetrun.events.invocations"
_COMMANDS = "fleetrun.events.commands"
_WRITTEN = "fleetrun.events.written"
_SAVEPOINTS = "fleetrun.events.savepoints"

# Called (on the database thread) after a transaction that wrote events commits: the
# server sets it to wake its outbox and its event streams.
_listeners: list[Callable[[], None]] = []


def on_committed(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` after each commit that wrote events; returns the remover."""
    _listeners.append(callback)
    return lambda: _listeners.remove(callback) if callback in _listeners else None


def emit(
    session: Session,
    detail_type: str,
    resources: Iterable[str],
    detail: Mapping[str, Any],
    *,
    at: datetime | None = None,
) -> str:
    """Write an event in the caller's transaction (at its commit); its id."""
    row = _row(detail_type, list(resources), dict(detail), at or utcnow())
    session.info.setdefault(_EVENTS, []).append(row)
    return str(row["id"])


def run_command_changed(
    session: Session,
    *,
    run_command: str,
    execution_state: str,
    node_id: str | None = None,
    group: str | None = None,
    command_id: str | None = None,
    document_name: str | None = None,
    run_id: str | None = None,
    provisioning_state: str | None = None,
    message: str | None = None,
) -> str:
    """A managed run command's execution state changed (Azure's Pending, Running,
    Succeeded, Failed, TimedOut, Canceled, Unknown): its event, in the caller's
    transaction. The resource is `frn:fleetrun:runcommand/<node>/<name>`."""
    where = f"{node_id}/{run_command}" if node_id else run_command
    resources = [access.frn("runcommand", where)]
    if node_id:
        resources.append(access.frn("node", node_id))
    if group:
        resources.append(access.frn("group", group))
    return emit(
        session,
        RUN_COMMAND_STATE,
        resources,
        {
            "run-command": run_command,
            "run-id": run_id,
            "node-id": node_id,
            "group": group,
            "execution-state": execution_state,
            "provisioning-state": provisioning_state,
            "execution-message": message,
            "command-id": command_id,
            "document-name": document_name,
        },
    )


@dataclass(frozen=True)
class _InvocationChange:
    command_id: str
    node_id: str
    node_name: str | None
    requested_at: datetime
    status: str
    status_detail: str
    exit_code: int | None
    at: datetime
    refusal: str | None = None  # the agent's reason, when its local policy refused


def invocation_changed(session: Session, inv: Invocation, *, refusal: str | None = None) -> None:
    """Note an invocation's new status (the event is made at commit)."""
    session.info.setdefault(_INVOCATIONS, []).append(
        _InvocationChange(
            inv.command_id,
            inv.node_id,
            inv.node_name,
            inv.requested_at,
            inv.status,
            inv.status_detail,
            inv.exit_code,
            utcnow(),
            refusal,
        )
    )


def invocations_changed(session: Session, rows: Iterable[Mapping[str, Any]]) -> None:
    """Note new invocations (or bulk changes) from their column values."""
    now = utcnow()
    session.info.setdefault(_INVOCATIONS, []).extend(
        _InvocationChange(
            r["command_id"],
            r["node_id"],
            r.get("node_name"),
            r["requested_at"],
            r["status"],
            r["status_detail"],
            r.get("exit_code"),
            now,
        )
        for r in rows
    )


def command_changed(session: Session, command: Command) -> None:
    """Note a command's new status (the event is made at commit)."""
    session.info.setdefault(_COMMANDS, []).append(
        (
            command.id,
            command.status,
            command.status_detail,
            (command.target_count, command.completed_count, command.error_count),
            utcnow(),
        )
    )


def _mark(session: Session) -> tuple[int, int, int]:
    """Where the session's queued events stand (when a savepoint begins)."""
    return tuple(len(session.info.get(k, ())) for k in (_EVENTS, _INVOCATIONS, _COMMANDS))  # type: ignore[return-value]


def _reset(session: Session, marks: tuple[int, int, int]) -> None:
    """Forget what was queued since `_mark` (the savepoint was rolled back)."""
    for key, length in zip((_EVENTS, _INVOCATIONS, _COMMANDS), marks, strict=True):
        if key in session.info:
            del session.info[key][length:]


def _flush(session: Session) -> None:
    rows: list[dict[str, Any]] = session.info.pop(_EVENTS, [])
    invocations: list[_InvocationChange] = session.info.pop(_INVOCATIONS, [])
    commands: list[tuple[str, str, str, tuple[int, int, int], datetime]] = session.info.pop(
        _COMMANDS, []
    )
    if invocations or commands:
        rows.extend(_status_events(session, invocations, commands))
    if not rows:
        return
    for start in range(0, len(rows), 1000):
        session.execute(insert(Event), rows[start : start + 1000])
    session.info[_WRITTEN] = True


def _status_events(
    session: Session,
    invocations: list[_InvocationChange],
    commands: list[tuple[str, str, str, tuple[int, int, int], datetime]],
) -> list[dict[str, Any]]:
    ids = {c.command_id for c in invocations} | {c[0] for c in commands}
    info = _command_info(session, ids)
    rows = []
    for change in invocations:
        command = info.get(change.command_id)
        document = command["document_name"] if command else ""
        detail = invocation_detail(
            command_id=change.command_id,
            document_name=document,
            node_id=change.node_id,
            node_name=change.node_name,
            requested_at=change.requested_at,
            status=change.status,
            status_detail=change.status_detail,
            exit_code=change.exit_code,
        )
        resources = [access.frn("node", change.node_id), access.frn("command", change.command_id)]
        rows.append(_row(INVOCATION_STATUS, resources, detail, change.at))
        if change.refusal is not None:
            refusal = {
                "command-id": change.command_id,
                "document-name": document,
                "node-id": change.node_id,
                "node-name": change.node_name,
                "status-detail": change.status_detail,
                "reason": change.refusal,
            }
            rows.append(_row(LOCAL_POLICY_REFUSAL, resources, refusal, change.at))
    for command_id, status, status_detail, counts, at in commands:
        c = info.get(command_id)
        if c is None:
            continue
        detail = command_detail(
            command_id=command_id,
            document_name=c["document_name"],
            document_version=c["document_version"],
            parameters=c["parameters"] or {},
            requested_at=c["requested_at"],
            expires_at=c["expires_at"],
            status=status,
            status_detail=status_detail,
            principal=c["principal"],
            counts=counts,
            comment=c["comment"],
        )
        rows.append(_row(COMMAND_STATUS, [access.frn("command", command_id)], detail, at))
    return rows


_INFO_FIELDS = (
    "document_name",
    "document_version",
    "parameters",
    "requested_at",
    "expires_at",
    "principal",
    "comment",
)


def _command_info(session: Session, ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    listed = sorted(ids)
    columns = [getattr(Command, f) for f in _INFO_FIELDS]
    for start in range(0, len(listed), 500):
        result = session.execute(
            select(Command.id, *columns).where(Command.id.in_(listed[start : start + 500]))
        )
        for row in result.mappings():
            found[row["id"]] = {f: row[f] for f in _INFO_FIELDS}
    return found


def _row(
    detail_type: str, resources: list[str], detail: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "id": new_uuid(),
        "detail_type": detail_type,
        "time": at,
        "resources": resources,
        "detail": detail,
        "routed": False,
    }


def _committed(session: Session) -> None:
    if session.info.pop(_WRITTEN, False):
        for callback in list(_listeners):
            callback()


def _began(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:  # a savepoint: remember where its events start
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = _mark(session)


def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """A savepoint rolled back forgets only its own events; the whole transaction, all."""
    if previous_transaction.nested:
        marks = session.info.get(_SAVEPOINTS, {}).get(previous_transaction)
        if marks is not None:
            _reset(session, marks)
    elif previous_transaction.parent is None:
        for key in (_EVENTS, _INVOCATIONS, _COMMANDS, _WRITTEN, _SAVEPOINTS):
            session.info.pop(key, None)


sa_event.listen(Session, "before_commit", _flush)
sa_event.listen(Session, "after_commit", _committed)
sa_event.listen(Session, "after_transaction_create", _began)
sa_event.listen(Session, "after_soft_rollback", _rolled_back)
