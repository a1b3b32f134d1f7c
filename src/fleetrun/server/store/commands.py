"""Commands: creation (document, targets, limits, one invocation per node, in one
transaction), the status and rate control derived from the invocations, deadlines,
cancel, and reading."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from fleetrun.core import access, documents, envnames, protocol, ratecontrol, sealing, targets
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.core.events import NOTIFY_STATUSES
from fleetrun.core.ids import is_uuid, new_uuid
from fleetrun.core.protocol import Step
from fleetrun.core.statuses import (
    CommandStatus,
    InvocationStatus,
    StatusDetail,
)
from fleetrun.schemas import commands as schemas
from fleetrun.server import events
from fleetrun.server.authz import Caller
from fleetrun.server.store import documents as document_store
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
    utcnow,
)

ACCESS_DENIED_MESSAGE = "The sender may not run commands on this node (fleetrun:SendCommand)."


def _steps_bytes(steps: list[Step]) -> int:
    """What the steps carry to the node: scripts, environment and arguments."""
    return sum(
        len(step.script.encode())
        + sum(len(k.encode()) + len(v.encode()) for k, v in step.env.items())
        + sum(len(a.encode()) for a in step.args)
        for step in steps
    )


def create_command(
    session: Session,
    body: schemas.CommandCreate,
    *,
    principal: str | None,
    caller: Caller | None = None,
    extras: StepExtras | None = None,
    now: datetime | None = None,
) -> Command:
    """`now` (default: the system's time) is when it was requested; its delivery
    deadline and expiry count from then."""
    doc = document_store.resolve(session, body.document_name, body.document_version)
    run_as = (body.run_as or "").strip() or None
    conditions = access.command_context(doc.name, body.parameters, run_as)
    if caller is not None:  # SendCommand is decided on the document, then on each node
        caller.require("SendCommand", access.frn("document", doc.name), conditions)
    params = documents.bind_parameters(doc.content, body.parameters)
    steps = documents.resolve_steps(
        doc.content, params, documents.StepOptions(run_as=run_as, args=list(body.arguments))
    )
    if extras is not None:
        steps = [extras.apply(step) for step in steps]
    envnames.check((name for step in steps for name in step.env), "Parameter", caller=False)
    protocol.check_script_size(_steps_bytes(steps), "The command's script with its parameters")
    if not any(
        step.script.strip() or step.script_uri or step.action == "getNodeInfo" for step in steps
    ):
        raise ValidationError("The script is empty: give the commands to run.")
    execution_s = _in_range(
        body.execution_timeout_s,
        "Execution timeout",
        schemas.DEFAULT_EXECUTION_TIMEOUT_S,
        schemas.MIN_EXECUTION_TIMEOUT_S,
        schemas.MAX_EXECUTION_TIMEOUT_S,
    )
    delivery_s = _in_range(
        body.delivery_timeout_s,
        "Delivery timeout",
        schemas.DEFAULT_DELIVERY_TIMEOUT_S,
        schemas.MIN_DELIVERY_TIMEOUT_S,
        schemas.MAX_DELIVERY_TIMEOUT_S,
    )
    max_concurrency = ratecontrol.check_concurrency(
        body.max_concurrency or ratecontrol.DEFAULT_MAX_CONCURRENCY
    )
    max_errors = ratecontrol.check_errors(body.max_errors or ratecontrol.DEFAULT_MAX_ERRORS)
    wanted = targets.check(list(body.targets))
    node_ids, candidates = _resolve(session, wanted)
    denied = _denied_targets(caller, candidates, node_ids, conditions)
    secrets = _check_secrets(body, [n for n in node_ids if n not in denied], params, denied)
    now = now or utcnow()
    count = len(node_ids)
    command = Command(
        id=new_uuid(),
        document_name=doc.name,
        document_version=doc.version,
        document_hash=doc.hash,
        document_content=doc.content,
        document_signatures=doc.signatures,
        parameters=body.parameters,
        arguments=list(body.arguments),
        run_as=run_as,
        targets=[t.model_dump() for t in wanted],
        steps=[s.model_dump(exclude_none=True) for s in steps],
        comment=body.comment,
        principal=principal,
        requested_at=now,
        deliver_by=now + timedelta(seconds=delivery_s),
        expires_at=now + timedelta(seconds=delivery_s + execution_s),
        execution_timeout_s=execution_s,
        delivery_timeout_s=delivery_s,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        concurrency_limit=ratecontrol.concurrency_limit(max_concurrency, count),
        error_threshold=ratecontrol.error_threshold(max_errors, count),
        status=CommandStatus.PENDING,
        status_detail=StatusDetail.PENDING,
        counts={},
        version=0,
        updated_at=now,
        notification=_notification(session, body, caller),
    )
    session.add(command)
    session.flush()
    events.command_changed(session, command)
    _add_invocations(session, command, node_ids, now, secrets, denied)
    return command  # the engine releases the first invocations (engine.commands.send_command)


def _notification(
    session: Session, body: schemas.CommandCreate, caller: Caller | None
) -> dict[str, Any] | None:
    """The command's notification configuration, checked: the caller may notify the
    channel, it exists, the statuses are ones that notify."""
    config = body.notification
    if config is None:
        return None
    if caller is not None:
        caller.require("NotifyChannel", access.frn("channel", config.channel))
    if session.get(Channel, config.channel) is None:
        raise ValidationError(
            f"No channel {config.channel!r} exists to notify: create it with "
            "`fleetrun channels create`, or list them with `fleetrun channels list`."
        )
    wrong = [s for s in config.events if s not in NOTIFY_STATUSES]
    if wrong or not config.events:
        raise ValidationError(
            f"Notification status {wrong[0] if wrong else ''!r} does not notify: choose among "
            + ", ".join(NOTIFY_STATUSES)
            + " (Pending and Cancelling never notify)."
        )
    return config.model_dump()


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
        return step.model_copy(update=update)


def resolve_targets(session: Session, wanted: list[targets.Target]) -> list[str]:
    """The ids of the nodes these (checked) targets select now."""
    return _resolve(session, wanted)[0]


def _resolve(
    session: Session, wanted: list[targets.Target]
) -> tuple[list[str], list[targets.Candidate]]:
    """The selected node ids, and the candidates (with their tags) they came from."""
    named = [v for t in wanted if t.key == "NodeIds" for v in t.values]
    if named:
        node_store.read_nodes_by_ids(session, named)  # ids the caller named must exist
    expanded = group_store.expand(session, wanted)
    candidates = node_store.candidates(session, expanded, strict=False)
    return targets.select(expanded, candidates), candidates


def _denied_targets(
    caller: Caller | None,
    candidates: list[targets.Candidate],
    node_ids: list[str],
    conditions: dict[str, Any],
) -> set[str]:
    """The selected nodes the caller may not send to (SendCommand on each node, with its
    tags): they get an invocation in AccessDenied, and the others still run."""
    if caller is None:
        return set()
    selected = set(node_ids)
    return caller.denied_nodes(
        "SendCommand", (c for c in candidates if c.id in selected), conditions
    )


def _in_range(value: int | None, what: str, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not low <= value <= high:
        raise ValidationError(f"{what} {value}s is out of range: give {low} to {high} seconds.")
    return value


def _check_secrets(
    body: schemas.CommandCreate,
    node_ids: list[str],
    params: Mapping[str, object],
    denied: Collection[str] = (),
) -> dict[str, dict[str, object]]:
    """Sealed secrets per node: exactly one set for every target that will run, sealed
    values only (those sealed for a node the sender may not act on are dropped)."""
    given = {k: v for k, v in (body.secret_parameters or {}).items() if k not in denied}
    if not body.secret_parameters:
        return {}
    if set(given) != set(node_ids):
        missing = sorted(set(node_ids) - set(given))
        raise ConflictError(
            "Secret parameters must be sealed for every target node and only those: "
            + (f"node {missing[0]} has none" if missing else "some are for nodes not targeted")
            + "; resolve the targets again and resend."
        )
    for node_id, sealed in given.items():
        for name, value in sealed.env.items():
            envnames.check([name], "Secret parameter")
            if name in params:
                raise ValidationError(
                    f"Secret parameter {name!r} has the name of a document parameter."
                )
            if not sealing.is_sealed(value):
                raise ValidationError(
                    f"Secret parameter {name!r} for {node_id} is not sealed: seal it to the "
                    "node's key."
                )
        if not all(sealing.is_sealed(v) for v in sealed.args):
            raise ValidationError(
                f"A secret argument for {node_id} is not sealed: seal it to the node's key."
            )
    return {node_id: {"env": s.env, "args": s.args} for node_id, s in given.items()}


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
