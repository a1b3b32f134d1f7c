"""Activations: one-time enrolment grants traded by agents for a node identity."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
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


def activations_by_id(session: Session, ids: Iterable[str]) -> dict[str, Activation]:
    """The activations of these ids that exist (ids that are not UUIDs are none)."""
    wanted = {i for i in ids if is_uuid(i)}
    if not wanted:
        return {}
    rows = session.execute(select(Activation).where(Activation.id.in_(wanted))).scalars()
    return {row.id: row for row in rows}


def check_activation(row: Activation | None, code: str, now: datetime) -> Activation:
    """The activation, if `code` is its code and it has not expired; else why not.

    Expiry is told only to a caller who knows the code; the registration limit is
    counted by `claim_registrations`."""
    if row is None or not hmac.compare_digest(row.code_hash, hash_token(code)):
        raise AuthenticationError(WRONG)
    if row.expires_at <= now:
        raise AccessDeniedError(
            f"Activation {row.id} expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC: "
            "create a new one with `fleetrun activations create`."
        )
    return row


def limit_reached(row: Activation) -> AccessDeniedError:
    return AccessDeniedError(
        f"Activation {row.id} has reached its registration limit of "
        f"{row.registration_limit}: create a new one with `fleetrun activations create "
        "--limit N`."
    )


def claim_registrations(session: Session, activation_id: str, count: int) -> bool:
    """Count `count` registrations against the activation, all or none: none when that
    would pass its limit (another server may have counted some since it was read)."""
    claimed = session.execute(
        update(Activation)
        .where(
            Activation.id == activation_id,
            Activation.registrations_count + count <= Activation.registration_limit,
        )
        .values(registrations_count=Activation.registrations_count + count)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined,no-any-return]


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
