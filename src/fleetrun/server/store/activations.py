"""Activations: one-time enrolment grants traded by agents for a node identity."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleetrun.core.errors import AccessDeniedError, AuthenticationError, NotFoundError
from fleetrun.core.ids import is_uuid, new_secret, new_uuid
from fleetrun.core.inputs import check_label
from fleetrun.core.tags import check_tags
from fleetrun.schemas import activations as schemas
from fleetrun.server.store.tables import Activation, utcnow
from fleetrun.server.store.tokens import hash_token

WRONG = (
    "The activation id or code is wrong: use the id and code printed by "
    "`fleetrun activations create`."
)


def create_activation(
    session: Session, body: schemas.ActivationCreate, now: datetime | None = None
) -> tuple[Activation, str]:
    code = new_secret(24)
    now = now or utcnow()
    row = Activation(
        id=new_uuid(),
        code_hash=hash_token(code),
        name=check_label(body.name, "The node name") if body.name is not None else None,
        description=body.description,
        tags=check_tags(dict(body.tags)),
        registration_limit=body.registration_limit,
        registrations_count=0,
        expires_at=now + timedelta(seconds=body.expires_in_s),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, code


def read_activations(session: Session) -> list[Activation]:
    rows = session.execute(select(Activation).order_by(Activation.created_at.desc()))
    return list(rows.scalars())


def delete_activation(session: Session, activation_id: str) -> None:
    row = session.get(Activation, activation_id)
    if row is None:
        raise NotFoundError(
            f"No activation {activation_id} exists; see `fleetrun activations list`."
        )
    session.delete(row)


def consume_activation(
    session: Session, activation_id: str, code: str, now: datetime | None = None
) -> Activation:
    """Count one registration against the activation at `now` (default: the system's
    time), or say why it cannot be used.

    Expiry and exhaustion are told only to a caller who knows the code."""
    row = session.get(Activation, activation_id) if is_uuid(activation_id) else None
    if row is None or not hmac.compare_digest(row.code_hash, hash_token(code)):
        raise AuthenticationError(WRONG)
    if row.expires_at <= (now or utcnow()):
        raise AccessDeniedError(
            f"Activation {activation_id} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
            "create a new one with `fleetrun activations create`."
        )
    claimed = session.execute(
        update(Activation)
        .where(
            Activation.id == activation_id,
            Activation.registrations_count < Activation.registration_limit,
        )
        .values(registrations_count=Activation.registrations_count + 1)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AccessDeniedError(
            f"Activation {activation_id} has reached its registration limit of "
            f"{row.registration_limit}: create a new one with `fleetrun activations create "
            "--limit N`."
        )
    return row


def to_schema(row: Activation, now: datetime | None = None) -> schemas.Activation:
    return schemas.Activation(
        id=row.id,
        name=row.name,
        description=row.description,
        tags=row.tags,
        registration_limit=row.registration_limit,
        registrations_count=row.registrations_count,
        expires_at=row.expires_at,
        created_at=row.created_at,
        expired=row.expires_at <= (now or utcnow()),
    )
