"""Applying the lifecycle table to stored invocations, one at a time or in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from fleetrun.core.lifecycle import Happening, Move, next_status
from fleetrun.core.statuses import InvocationStatus
from fleetrun.server import events
from fleetrun.server.store.tables import Invocation, InvocationTransition, utcnow

BULK_CHUNK = 500


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
                )
            ).mappings()
        ]
        if not rows:
            continue
        ids = [row.pop("id") for row in rows]
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
