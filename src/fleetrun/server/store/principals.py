"""Principals: users and service accounts, what is attached to them, and what they may
therefore do (their effective policies), read afresh on every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.core.policy import Policy as ParsedPolicy
from fleetrun.schemas import access as schemas
from fleetrun.server.store import policies as policy_store
from fleetrun.server.store import roles as role_store
from fleetrun.server.store import tokens as token_store
from fleetrun.server.store.tables import ApiToken, Attachment, Principal, utcnow

KINDS = ("policy", "role")


@dataclass(frozen=True)
class Identity:
    """Who a token speaks for, and the policies that decide what it may do."""

    token_id: str
    principal: str
    kind: str
    policies: tuple[ParsedPolicy, ...]
    expires_at: datetime | None = None  # the token's
    secret_sealed: str | None = None  # an access key's secret, sealed (server/secretbox.py)


def identify(session: Session, token: str, now: datetime | None = None) -> Identity | None:
    """The identity behind a token (None when it is unknown, revoked or expired at `now`,
    default the system's time), in
    one query on every request (and two more only for custom roles and policies)."""
    return _identify(session, ApiToken.token_hash == token_store.hash_token(token), now)


def identify_access_key(
    session: Session, access_key_id: str, now: datetime | None = None
) -> Identity | None:
    """The identity behind an AWS-style access key, with its sealed secret (None when
    the key is unknown, revoked or expired at `now`)."""
    return _identify(session, ApiToken.access_key_id == access_key_id, now)


def access_key_expired(session: Session, access_key_id: str, now: datetime) -> bool:
    """Whether this key exists, unrevoked, and has expired by `now` (AWS answers an
    expired key differently from an unknown one)."""
    found = session.execute(
        select(ApiToken.expires_at).where(
            ApiToken.access_key_id == access_key_id, ApiToken.revoked_at.is_(None)
        )
    ).first()
    return found is not None and found[0] is not None and found[0] <= now


def _identify(session: Session, which: Any, now: datetime | None) -> Identity | None:
    rows = session.execute(
        select(
            ApiToken.id,
            ApiToken.principal,
            Principal.kind,
            ApiToken.expires_at,
            ApiToken.secret_sealed,
            Attachment.kind,
            Attachment.name,
        )
        .join(Principal, Principal.name == ApiToken.principal)
        .outerjoin(Attachment, Attachment.principal == Principal.name)
        .where(
            which,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > (now or utcnow())),
        )
        .order_by(Attachment.kind, Attachment.attached_at, Attachment.name)
    ).all()
    if not rows:
        return None
    token_id, name, kind, expires_at, sealed = rows[0][:5]
    attached = [(k, n) for *_, k, n in rows if k is not None]
    policies = tuple(_policies(session, attached))
    return Identity(token_id, name, kind, policies, expires_at, sealed)


def effective_policies(session: Session, principal: str) -> list[ParsedPolicy]:
    """The principal's own policies, then its roles' policies."""
    return _policies(session, [(a.kind, a.name) for a in read_attachments(session, principal)])


def _policies(session: Session, attached: list[tuple[str, str]]) -> list[ParsedPolicy]:
    direct = [name for kind, name in attached if kind == "policy"]
    roles = [name for kind, name in attached if kind == "role"]
    return policy_store.load(session, [*direct, *role_store.role_policies(session, roles)])


def create_principal(
    session: Session, name: str, kind: str, *, description: str | None
) -> Principal:
    access.check_name("principal", name, max_length=64)
    if session.get(Principal, name) is not None:
        raise ConflictError(f"A principal named {name!r} exists already: pick another name.")
    row = Principal(
        name=name, kind=kind, description=description, builtin=False, created_at=utcnow()
    )
    session.add(row)
    session.flush()
    return row


def read_principal(session: Session, name: str) -> Principal:
    row = session.get(Principal, name)
    if row is None:
        raise NotFoundError(f"No principal {name!r} exists; see `fleetrun principals list`.")
    return row


def read_principals(session: Session) -> list[Principal]:
    return list(session.execute(select(Principal).order_by(Principal.name)).scalars())


def delete_principal(session: Session, name: str) -> None:
    """Delete a principal, its tokens and its attachments."""
    row = read_principal(session, name)
    if row.builtin:
        raise ConflictError(f"{name} is the built-in administrator and cannot be deleted.")
    session.execute(delete(ApiToken).where(ApiToken.principal == name))
    session.execute(delete(Attachment).where(Attachment.principal == name))
    session.delete(row)


def read_attachments(session: Session, principal: str) -> list[Attachment]:
    rows = session.execute(
        select(Attachment)
        .where(Attachment.principal == principal)
        .order_by(Attachment.kind, Attachment.attached_at, Attachment.name)
    )
    return list(rows.scalars())


def attach(session: Session, principal: str, kind: str, name: str) -> None:
    """Attach a policy or a role (attaching twice changes nothing)."""
    read_principal(session, principal)
    _check_kind(kind)
    exists = (
        policy_store.policy_exists(session, name)
        if kind == "policy"
        else role_store.role_exists(session, name)
    )
    if not exists:
        raise NotFoundError(f"No {kind} {name!r} exists; see `fleetrun {kind}s list`.")
    if session.get(Attachment, (principal, kind, name)) is None:
        session.add(Attachment(principal=principal, kind=kind, name=name, attached_at=utcnow()))


def detach(session: Session, principal: str, kind: str, name: str) -> None:
    row = read_principal(session, principal)
    _check_kind(kind)
    if row.builtin and kind == "role" and name == "Administrator":
        raise ConflictError(
            f"{principal} is the built-in administrator and keeps the Administrator role."
        )
    found = session.get(Attachment, (principal, kind, name))
    if found is None:
        raise NotFoundError(f"{kind.capitalize()} {name!r} is not attached to {principal}.")
    session.delete(found)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"Attach a policy or a role, not a {kind!r}.")


def ensure_admin(session: Session) -> None:
    """The built-in administrator exists and has the Administrator role."""
    if session.get(Principal, access.ADMIN_PRINCIPAL) is None:
        session.add(
            Principal(
                name=access.ADMIN_PRINCIPAL,
                kind="user",
                description="the built-in administrator",
                builtin=True,
                created_at=utcnow(),
            )
        )
        session.flush()
    key = (access.ADMIN_PRINCIPAL, "role", "Administrator")
    if session.get(Attachment, key) is None:
        session.add(Attachment(principal=key[0], kind=key[1], name=key[2], attached_at=utcnow()))


def to_schema(row: Principal, attached: list[Attachment]) -> schemas.Principal:
    return schemas.Principal(
        name=row.name,
        kind=row.kind,
        description=row.description,
        builtin=row.builtin,
        created_at=row.created_at,
        attached=[schemas.Attached(kind=a.kind, name=a.name) for a in attached],
    )
