"""Commands: creation (document, targets, limits, one invocation per node, in one
transaction), the status and rate control derived from the invocations, deadlines,
cancel, and reading."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from fleetrun.core import protocol, targets
from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_uuid, new_uuid
from fleetrun.core.protocol import Step
from fleetrun.core.statuses import (
    InvocationStatus,
)
from fleetrun.schemas import commands as schemas
from fleetrun.server import events
from fleetrun.server.store import groups as group_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.paging import decode_cursor, encode_cursor, status_clause
from fleetrun.server.store.tables import (
    Channel,
    Command,
    Invocation,
    InvocationTransition,
    Node,
    NodeTag,
)

ACCESS_DENIED_MESSAGE = "The sender may not run commands on this node (fleetrun:SendCommand)."


def insert_command(
    session: Session,
    command: Command,
    node_ids: list[str],
    secrets: dict[str, dict[str, object]],
    denied: Collection[str] = (),
) -> Command:
    """Write a command and one invocation per node (Pending, or AccessDenied where the
    sender may not act), with their events."""
    session.add(command)
    session.flush()
    events.command_changed(session, command)
    _add_invocations(session, command, node_ids, command.requested_at, secrets, denied)
    return command


def channel_exists(session: Session, name: str) -> bool:
    return session.get(Channel, name) is not None


TOO_OLD_FOR_SCRIPT_URI = (
    "echo 'This agent cannot download a scriptUri: upgrade fleetrun-agent on this node.' >&2\n"
    "exit 1\n"
)


@dataclass
class StepExtras:
    """What a run command adds to the steps of its document: named parameters as
    environment variables, and a script the agent downloads instead of the inline one."""

    env: dict[str, str] = field(default_factory=dict)
    script_uri: str | None = None
    script_sha256: str | None = None

    def apply(self, step: Step) -> Step:
        update: dict[str, Any] = {"env": {**step.env, **self.env}}
        if self.script_uri:
            # An agent that predates script_uri runs `script`: make it fail, not succeed.
            update.update(
                script=TOO_OLD_FOR_SCRIPT_URI,
                script_uri=self.script_uri,
                script_sha256=self.script_sha256,
            )
        return protocol.replace(step, **update)


def resolve_targets(session: Session, wanted: list[targets.Target]) -> list[str]:
    """The ids of the nodes these (checked) targets select now."""
    return resolve_candidates(session, wanted)[0]


def resolve_candidates(
    session: Session, wanted: list[targets.Target]
) -> tuple[list[str], list[targets.Candidate]]:
    """The selected node ids, and the candidates (with their tags) they came from."""
    named = [v for t in wanted if t.key == "NodeIds" for v in t.values]
    if named:
        node_store.read_nodes_by_ids(session, named)  # ids the caller named must exist
    expanded = group_store.expand(session, wanted)
    candidates = node_store.candidates(session, expanded, strict=False)
    return targets.select(expanded, candidates), candidates


def _add_invocations(
    session: Session,
    command: Command,
    node_ids: list[str],
    now: datetime,
    secrets: dict[str, dict[str, object]],
    denied: Collection[str] = (),
) -> None:
    """One Pending invocation per node; AccessDenied (final at once) where the sender
    may not act."""
    names = _names(session, node_ids)
    pending = (InvocationStatus.PENDING.value, None, None)
    refused = (InvocationStatus.ACCESS_DENIED.value, now, ACCESS_DENIED_MESSAGE)
    rows = []
    for seq, node_id in enumerate(node_ids):
        status, ended_at, message = refused if node_id in denied else pending
        rows.append(
            {
                "id": new_uuid(),
                "command_id": command.id,
                "node_id": node_id,
                "node_name": names.get(node_id),
                "seq": seq,
                "status": status,
                "status_detail": status,
                "requested_at": now,
                "ended_at": ended_at,
                "message": message,
                "last_seq": 0,
                "secrets": secrets.get(node_id),
                "updated_at": now,
            }
        )
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        session.execute(insert(Invocation), chunk)
        events.invocations_changed(session, chunk)
        session.execute(
            insert(InvocationTransition),
            [
                {
                    "invocation_id": r["id"],
                    "status": r["status"],
                    "detail": r["status_detail"],
                    "at": now,
                }
                for r in chunk
            ],
        )


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


def commands_by_id(session: Session, command_ids: Iterable[str]) -> dict[str, Command]:
    """The commands of these ids that exist, in one query."""
    ids = set(command_ids)
    if not ids:
        return {}
    rows = session.execute(select(Command).where(Command.id.in_(ids))).scalars()
    return {c.id: c for c in rows}


@dataclass
class CommandFilter:
    status: str | None = None
    document: str | None = None
    node_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


def read_commands(
    session: Session,
    filters: CommandFilter | None = None,
    *,
    limit: int = 50,
    cursor: str | None = None,
    keep: Callable[[Command], bool] | None = None,
) -> tuple[list[Command], str | None]:
    """Newest first, a page at a time. With `keep` (what the caller may read), a page
    holds kept commands only, reading on until `limit` are found."""
    filters = filters or CommandFilter()
    query = select(Command).order_by(Command.requested_at.desc(), Command.id.desc())
    if filters.status:
        query = query.where(status_clause(Command.status, Command.status_detail, filters.status))
    if filters.document:
        query = query.where(Command.document_name == filters.document)
    if filters.since:
        query = query.where(Command.requested_at >= filters.since)
    if filters.until:
        query = query.where(Command.requested_at < filters.until)
    if filters.node_id:
        query = query.where(
            Command.id.in_(
                select(Invocation.command_id).where(Invocation.node_id == filters.node_id)
            )
        )
    for key, value in filters.tags.items():
        tagged = select(NodeTag.node_id).where(NodeTag.key == key, NodeTag.value == value)
        query = query.where(
            Command.id.in_(select(Invocation.command_id).where(Invocation.node_id.in_(tagged)))
        )
    kept: list[Command] = []
    while True:
        page = query
        if cursor:
            at, last_id = decode_cursor(cursor)
            page = query.where(
                or_(
                    Command.requested_at < at,
                    and_(Command.requested_at == at, Command.id < last_id),
                )
            )
        rows = list(session.execute(page.limit(limit + 1)).scalars())
        for row in rows[:limit]:
            if keep is None or keep(row):
                kept.append(row)
            if len(kept) == limit:
                more = row is not rows[-1]
                return kept, encode_cursor(row.requested_at, row.id) if more else None
        if len(rows) <= limit:
            return kept, None
        cursor = encode_cursor(rows[limit - 1].requested_at, rows[limit - 1].id)


def to_schema(command: Command) -> schemas.Command:
    return schemas.Command(
        id=command.id,
        document_name=command.document_name,
        document_version=command.document_version,
        document_hash=command.document_hash,
        parameters=command.parameters,
        arguments=command.arguments or [],
        run_as=command.run_as,
        targets=[targets.Target(**t) for t in command.targets],
        comment=command.comment,
        principal=command.principal,
        requested_at=command.requested_at,
        expires_at=command.expires_at,
        deliver_by=command.deliver_by,
        execution_timeout_s=command.execution_timeout_s,
        delivery_timeout_s=command.delivery_timeout_s,
        max_concurrency=command.max_concurrency,
        max_errors=command.max_errors,
        concurrency_limit=command.concurrency_limit,
        error_threshold=command.error_threshold,
        cancel_requested_at=command.cancel_requested_at,
        status=command.status,
        status_detail=command.status_detail,
        target_count=command.target_count,
        completed_count=command.completed_count,
        error_count=command.error_count,
        delivery_timed_out_count=command.delivery_timed_out_count,
        counts=command.counts,
        version=command.version,
        notification=command.notification,
    )
