"""Commands through their lifecycle: sent, released within their rate limits, ended
past their error threshold or their deadlines, cancelled; their status and counts
derived from their invocations.

The store (`fleetrun.server.store.commands`) creates and reads rows; what happens to
them is decided here, every invocation status through `moves`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.orm import Session, load_only
from sqlalchemy.sql.elements import ColumnElement

from fleetrun.core import access, documents, envnames, protocol, ratecontrol, sealing, targets
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.core.events import NOTIFY_STATUSES
from fleetrun.core.ids import is_uuid, new_uuid
from fleetrun.core.lifecycle import Happening
from fleetrun.core.protocol import Step
from fleetrun.core.statuses import (
    TERMINAL_COMMAND,
    TERMINAL_INVOCATION,
    CommandStatus,
    InvocationStatus,
    StatusDetail,
    is_error,
    summarize_counts,
)
from fleetrun.schemas import commands as schemas
from fleetrun.server import events
from fleetrun.server.authz import Caller
from fleetrun.server.db import publish
from fleetrun.server.engine import moves
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import documents as document_store
from fleetrun.server.store.tables import Command, Invocation, utcnow

# How long past a command's expiry a running invocation may stay without a word from
# its agent before the server gives up on it.
LOST_GRACE_S = 60


def send_command(
    session: Session,
    body: schemas.CommandCreate,
    *,
    principal: str | None,
    caller: Caller | None = None,
    extras: command_store.StepExtras | None = None,
    now: datetime | None = None,
) -> Command:
    """Send a command: the document decided (SendCommand on it), its parameters bound,
    its targets resolved and each node decided; the command and its invocations
    written, and the first of them released. `now` (default: the system's time) is when
    it was requested; its delivery deadline and expiry count from then."""
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
    node_ids, candidates = command_store.resolve_candidates(session, wanted)
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
        steps=[protocol.as_dict(s) for s in steps],
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
    command_store.insert_command(session, command, node_ids, secrets, denied)
    refresh_command(session, command.id)  # releases the first invocations
    return command


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
    if not command_store.channel_exists(session, config.channel):
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


def _steps_bytes(steps: list[Step]) -> int:
    """What the steps carry to the node: scripts, environment and arguments."""
    return sum(
        len(step.script.encode())
        + sum(len(k.encode()) + len(v.encode()) for k, v in step.env.items())
        + sum(len(a.encode()) for a in step.args)
        for step in steps
    )


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


@dataclass
class Refreshed:
    changed: bool = False  # status or counts changed
    released: bool = False  # invocations were released to their nodes
    finished: tuple[str, float] | None = None  # turned terminal: (status, seconds since sent)


_SUMMARY_COLUMNS = (
    Command.tally,
    Command.error_threshold,
    Command.concurrency_limit,
    Command.status,
    Command.status_detail,
    Command.target_count,
    Command.completed_count,
    Command.error_count,
    Command.delivery_timed_out_count,
    Command.counts,
    Command.version,
    Command.updated_at,
    Command.requested_at,
)


def refresh_command(session: Session, command_id: str) -> Refreshed:
    """Apply rate control, then recompute the command's status and counts from its
    invocations.

    The command row is locked first, so concurrent updates of its invocations are
    counted one after the other and none is lost."""
    command = session.execute(
        select(Command)
        .options(load_only(*_SUMMARY_COLUMNS))
        .where(Command.id == command_id)
        .with_for_update()
        .execution_options(populate_existing=True)  # the tally as locked, not as seen before
    ).scalar_one()
    changes, trusted = moves.take_tally(session, command_id)
    if command.tally is None or not trusted:
        tally = _count(session, command_id)  # the moves of this transaction included
        moves.counted(session, command_id)
    else:
        tally = Counter(command.tally)
        tally.update(changes)
    groups = _groups(tally)
    waiting = sum(n for s, _, w, n in groups if w)
    in_flight = sum(n for s, _, w, n in groups if s not in TERMINAL_INVOCATION and not w)
    errors = sum(n for s, d, _, n in groups if is_error(s, d))
    decision = ratecontrol.plan(
        in_flight=in_flight,
        waiting=waiting,
        errors=errors,
        limit=command.concurrency_limit,
        threshold=command.error_threshold,
    )
    result = Refreshed()
    if decision.terminate:
        _terminate_waiting(session, command_id)
    elif decision.release:
        _release(session, command_id, decision.release)
        result.released = True
    tally.update(moves.take_tally(session, command_id)[0])  # what either just moved
    stored = {key: n for key, n in sorted(tally.items()) if n}
    if command.tally != stored:
        command.tally = stored
    summary = summarize_counts(
        ((s, d, n) for s, d, _, n in _groups(stored)), error_threshold=command.error_threshold
    )
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
        return result
    status_changed = (command.status, command.status_detail) != (
        new["status"],
        new["status_detail"],
    )
    for key, value in new.items():
        setattr(command, key, value)
    command.version += 1
    command.updated_at = utcnow()
    result.changed = True
    if status_changed:
        events.command_changed(session, command)
        if command.status in TERMINAL_COMMAND:
            elapsed_s = (command.updated_at - command.requested_at).total_seconds()
            result.finished = (command.status, elapsed_s)
    return result


def _waiting(command_id: str) -> ColumnElement[bool]:
    return and_(
        Invocation.command_id == command_id,
        Invocation.status == InvocationStatus.PENDING,
        Invocation.released_at.is_(None),
    )


def _groups(tally: Mapping[str, int]) -> list[tuple[str, str, bool, int]]:
    """(status, detail, waiting, how many) of each non-empty group of the tally."""
    return [(*moves.parse_tally_key(key), n) for key, n in tally.items() if n]


def _count(session: Session, command_id: str) -> Counter[str]:
    """The command's tally counted from its invocations (once per command, or when a
    transaction left it unknown: engine.moves)."""
    rows = session.execute(
        select(
            Invocation.status,
            Invocation.status_detail,
            Invocation.released_at.is_(None),
            func.count(),
        )
        .where(Invocation.command_id == command_id)
        .group_by(Invocation.status, Invocation.status_detail, Invocation.released_at.is_(None))
    ).all()
    tally: Counter[str] = Counter()
    for status, detail, unreleased, n in rows:
        tally[moves.tally_key(status, detail, unreleased=unreleased)] += n
    return tally


def _release(session: Session, command_id: str, count: int) -> None:
    """Release the next `count` waiting invocations (noted for the tally)."""
    ids = list(
        session.execute(
            select(Invocation.id).where(_waiting(command_id)).order_by(Invocation.seq).limit(count)
        ).scalars()
    )
    session.execute(update(Invocation).where(Invocation.id.in_(ids)).values(released_at=utcnow()))
    moves.note_released(session, command_id, len(ids))


def _terminate_waiting(session: Session, command_id: str) -> None:
    """Max-errors was exceeded: what has not started never will."""
    ids = list(session.execute(select(Invocation.id).where(_waiting(command_id))).scalars())
    moves.move_waiting(session, ids, Happening.ERROR_THRESHOLD)


def _late(now: datetime) -> Select[Any]:
    return (
        select(Invocation)
        .join(Command, Command.id == Invocation.command_id)
        .where(
            Invocation.status.in_([InvocationStatus.PENDING, InvocationStatus.DELAYED]),
            Command.deliver_by <= now,
        )
    )


def _lost(now: datetime) -> Select[Any]:
    return (
        select(Invocation)
        .join(Command, Command.id == Invocation.command_id)
        .where(
            Invocation.status.in_([InvocationStatus.IN_PROGRESS, InvocationStatus.CANCELLING]),
            Command.expires_at <= now - timedelta(seconds=LOST_GRACE_S),
        )
    )


def expiry_due(session: Session, now: datetime) -> bool:
    """Whether `expire` has anything to do: a read, so that the dispatcher's passes take
    the database's writer only when a deadline has passed."""
    for query in (_late(now), _lost(now)):
        if session.execute(query.with_only_columns(Invocation.id).limit(1)).first():
            return True
    return False


def expire(session: Session, now: datetime) -> set[str]:
    """Close out what has run out of time; the commands touched.

    - not started by the command's delivery deadline: TimedOut (DeliveryTimedOut);
    - running, or being cancelled, long past the command's expiry with no word from
      the agent (the node went away): TimedOut (ExecutionTimedOut) or Cancelled."""
    touched: set[str] = set()
    late = list(session.execute(_late(now).limit(2000)).scalars())
    lost = list(session.execute(_lost(now).limit(2000)).scalars())
    lock_commands(session, {inv.command_id for inv in [*late, *lost]})
    for inv in late:
        if moves.move(session, inv, Happening.DELIVERY_DEADLINE, at=now):
            touched.add(inv.command_id)
    for inv in lost:
        if moves.move(session, inv, Happening.EXPIRED, at=now):
            touched.add(inv.command_id)
    return touched


LOCK_BATCH = 1000  # ids per statement when locking commands


def lock_commands(session: Session, command_ids: Iterable[str]) -> None:
    """Lock these commands' rows in id order, before any of their invocations is
    changed: every transaction that changes invocations of several commands takes its
    command locks so, first (`engine.invocations.lock_commands_of`), and no two wait on
    each other in a cycle (PostgreSQL; SQLite runs one writer at a time)."""
    ordered = sorted(set(command_ids))
    if not ordered or session.get_bind().dialect.name == "sqlite":
        return
    for first in range(0, len(ordered), LOCK_BATCH):
        chunk = ordered[first : first + LOCK_BATCH]
        session.execute(
            select(Command.id).where(Command.id.in_(chunk)).order_by(Command.id).with_for_update()
        )


def cancel_command(
    session: Session, command_id: str, node_ids: list[str] | None
) -> list[tuple[str, str]]:
    """Cancel a command, or its invocations on some nodes: (node id, invocation id) of
    every invocation an agent may be running, to be told to stop.

    Not started: Cancelled at once. Running: Cancelling, until the agent confirms.
    Finished: unchanged."""
    command = (
        session.execute(
            select(Command)
            .options(load_only(Command.id, Command.cancel_requested_at))
            .where(Command.id == command_id)
            .with_for_update()
        ).scalar_one_or_none()
        if is_uuid(command_id)
        else None
    )
    if command is None:
        raise NotFoundError(
            f"No command {command_id} exists; list commands with `fleetrun commands list`."
        )
    query = select(Invocation).where(Invocation.command_id == command_id)
    if node_ids:
        query = query.where(Invocation.node_id.in_(node_ids))
    invocations = list(session.execute(query).scalars())
    if node_ids:
        have = {inv.node_id for inv in invocations}
        missing = [n for n in node_ids if n not in have]
        if missing:
            raise NotFoundError(f"Command {command_id} has no invocation on node {missing[0]}.")
    now = utcnow()
    command.cancel_requested_at = now
    notify = []
    for inv in invocations:
        released = inv.released_at is not None
        moved = moves.move(session, inv, Happening.CANCEL, at=now)
        if moved is None:
            continue
        if moved.status == InvocationStatus.CANCELLING or released:
            notify.append((inv.node_id, inv.id))  # running, or maybe on its way to the agent
    # The replica holding each agent tells it (maybe another: server/bus.py).
    publish(session, "cancel", [f"{node_id} {inv_id}" for node_id, inv_id in notify])
    return notify
