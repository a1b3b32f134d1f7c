"""Applying the lifecycle table to stored invocations, one at a time or in bulk."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, update
from sqlalchemy.orm import Session, SessionTransaction

from fleetrun.core.lifecycle import Happening, Move, next_status
from fleetrun.core.statuses import InvocationStatus
from fleetrun.server import events
from fleetrun.server.store.tables import Command, Invocation, InvocationTransition, utcnow

BULK_CHUNK = 500

# A command keeps a tally of its invocations by (status, detail, waiting) so that its
# counts and rate control follow each move instead of recounting every invocation
# (engine.commands.refresh_command). Each move notes its change here, in the
# session; the command's refresh in the same transaction applies it. Whatever is
# left when the transaction commits (or was inside a savepoint rolled back) makes
# that command's tally unknown: its next refresh counts again.
_TALLY = "fleetrun.tally"  # command id -> Counter of tally keys
_UNKNOWN = "fleetrun.tally.unknown"  # command ids


def tally_key(status: str, detail: str | None, *, unreleased: bool) -> str:
    """The tally's key: waiting means Pending and not yet released by rate control."""
    waiting = status == InvocationStatus.PENDING and unreleased
    return f"{status}|{detail or ''}|{'waiting' if waiting else ''}"


def parse_tally_key(key: str) -> tuple[str, str, bool]:
    status, detail, waiting = key.split("|")
    return status, detail, waiting == "waiting"


def note_tally(session: Session, command_id: str, old: str, new: str, n: int = 1) -> None:
    if old == new or n == 0:
        return
    changes = session.info.setdefault(_TALLY, {}).setdefault(command_id, Counter())
    changes[old] -= n
    changes[new] += n


def note_released(session: Session, command_id: str, n: int) -> None:
    """Rate control released `n` waiting invocations of the command (Pending, detail
    Pending: the only Pending there is)."""
    pending = InvocationStatus.PENDING
    waiting = tally_key(pending, pending, unreleased=True)
    note_tally(session, command_id, waiting, tally_key(pending, pending, unreleased=False), n)


def take_tally(session: Session, command_id: str) -> tuple[Counter[str], bool]:
    """The changes noted for this command since it was last refreshed, and whether its
    stored tally can be trusted in this transaction."""
    changes = session.info.get(_TALLY, {}).pop(command_id, Counter())
    return changes, command_id not in session.info.get(_UNKNOWN, ())


def counted(session: Session, command_id: str) -> None:
    """The command's tally was just counted from its invocations in this transaction:
    from here on, what is noted applies to it again."""
    session.info.get(_UNKNOWN, set()).discard(command_id)


def _settle(session: Session) -> None:
    """Before commit: a command whose noted changes no refresh applied counts again."""
    left = set(session.info.pop(_TALLY, {})) | session.info.pop(_UNKNOWN, set())
    ids = sorted(left)
    for start in range(0, len(ids), BULK_CHUNK):
        session.execute(
            update(Command)
            .where(Command.id.in_(ids[start : start + BULK_CHUNK]))
            .values(tally=None)
            .execution_options(synchronize_session=False)
        )


def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.nested:  # what was noted may have been undone: count again
        noted = session.info.pop(_TALLY, {})
        session.info.setdefault(_UNKNOWN, set()).update(noted)
    elif previous_transaction.parent is None:
        session.info.pop(_TALLY, None)
        session.info.pop(_UNKNOWN, None)


sa_event.listen(Session, "before_commit", _settle)
sa_event.listen(Session, "after_soft_rollback", _rolled_back)


def move(
    session: Session,
    inv: Invocation,
    happening: Happening,
    *,
    result: InvocationStatus | str | None = None,
    detail: str | None = None,
    message: str | None = None,
    refusal: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> Move | None:
    """Apply `happening` to `inv` in `session`: the new status, detail and message, its
    transition record and its event; None (and nothing written) when it stays put.

    A terminal move clears the sealed secrets and sets `ended_at` (to `at`, or now,
    unless `fields` name it); `fields` are set on the row with the move only.
    `refusal`, the agent's reason, makes the event a local-policy refusal as well."""
    moved = next_status(inv.status, happening, result=result, detail=detail, message=message)
    if moved is None:
        return None
    now = at or utcnow()
    old = tally_key(inv.status, inv.status_detail, unreleased=inv.released_at is None)
    inv.status = moved.status.value
    inv.status_detail = moved.detail
    inv.updated_at = now
    if moved.message is not None:
        inv.message = moved.message
    if moved.terminal:
        inv.secrets = None  # sealed secrets are kept only while they may still be needed
        fields.setdefault("ended_at", now)
    for key, value in fields.items():
        setattr(inv, key, value)
    new = tally_key(inv.status, inv.status_detail, unreleased=inv.released_at is None)
    note_tally(session, inv.command_id, old, new)
    session.add(
        InvocationTransition(
            invocation_id=inv.id, status=inv.status, detail=inv.status_detail, at=now
        )
    )
    events.invocation_changed(session, inv, refusal=refusal)
    return moved


def move_waiting(
    session: Session, invocation_ids: Sequence[str], happening: Happening
) -> list[str]:
    """Apply `happening` to many Pending invocations with set-based statements (the
    error threshold ends thousands at once): each is moved only if it is still
    Pending, so a concurrent move wins cleanly. The ids moved."""
    moved = next_status(InvocationStatus.PENDING, happening)
    if moved is None or not invocation_ids:
        return []
    now = utcnow()
    done: list[str] = []
    for start in range(0, len(invocation_ids), BULK_CHUNK):
        chunk = list(invocation_ids[start : start + BULK_CHUNK])
        values: dict[str, Any] = {
            "status": moved.status.value,
            "status_detail": moved.detail,
            "updated_at": now,
        }
        if moved.message is not None:
            values["message"] = moved.message
        if moved.terminal:
            values |= {"secrets": None, "ended_at": now}
        # RETURNING hands back what the events need: no second read of the rows.
        rows = [
            dict(row)
            for row in session.execute(
                update(Invocation)
                .where(
                    Invocation.id.in_(chunk),
                    Invocation.status == InvocationStatus.PENDING.value,
                )
                .values(**values)
                .returning(
                    Invocation.id,
                    Invocation.command_id,
                    Invocation.node_id,
                    Invocation.node_name,
                    Invocation.requested_at,
                    Invocation.status,
                    Invocation.status_detail,
                    Invocation.exit_code,
                    Invocation.released_at,
                )
            ).mappings()
        ]
        if not rows:
            continue
        ids = [row.pop("id") for row in rows]
        for row in rows:
            # Pending is only ever the first status, with the detail Pending.
            unreleased = row.pop("released_at") is None
            was = tally_key(
                InvocationStatus.PENDING, InvocationStatus.PENDING, unreleased=unreleased
            )
            now_key = tally_key(row["status"], row["status_detail"], unreleased=unreleased)
            note_tally(session, row["command_id"], was, now_key)
        session.execute(
            insert(InvocationTransition),
            [
                {
                    "invocation_id": i,
                    "status": moved.status.value,
                    "detail": moved.detail,
                    "at": now,
                }
                for i in ids
            ],
        )
        events.invocations_changed(session, rows)
        done += ids
    return done
