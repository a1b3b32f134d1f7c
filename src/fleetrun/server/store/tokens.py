"""API tokens: random secrets shown once and stored only as SHA-256 hashes. Each
belongs to a principal; deleting the principal deletes its tokens.

An AWS-style access key (for SigV4 clients of the SSM-compatible API) is a token row
too, so it expires, is listed and revoked, and goes with its principal like any other:
its id is public, its secret is stored sealed with the server's key (a signature can
only be checked with the secret itself), and the row's hash is of a value nobody holds,
so the key is no bearer token."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_uuid, new_uuid
from fleetrun.schemas import access as schemas
from fleetrun.server.store.tables import ApiToken, Principal, utcnow

PREFIX = "frt_"
ACCESS_KEY_PREFIX = "FRK"  # then 17 characters: 20 in all, as AWS's access key ids
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session,
    principal: str,
    *,
    description: str | None = None,
    expires_at: datetime | None = None,
    token: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token row and its plaintext (the only time the plaintext exists)."""
    if session.get(Principal, principal) is None:
        raise NotFoundError(
            f"No principal {principal!r} exists; create it with `fleetrun principals create "
            f"{principal}`."
        )
    token = token or new_token()
    row = ApiToken(
        id=new_uuid(),
        principal=principal,
        token_hash=hash_token(token),
        description=description,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def new_access_key() -> tuple[str, str]:
    """(access key id, secret access key): 20 and 40 characters, as AWS's."""
    key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))
    return key_id, secrets.token_urlsafe(30)


def seal_context(access_key_id: str) -> str:
    """What a sealed secret is bound to: it opens only as this key's."""
    return f"access-key:{access_key_id}"


def create_access_key(
    session: Session,
    principal: str,
    seal: Callable[[str, str], str],
    *,
    description: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new access key of `principal` and its secret (the only time it is in clear);
    `seal(secret, context)` is the server's secret box."""
    row, _ = create_token(session, principal, description=description, expires_at=expires_at)
    key_id, secret = new_access_key()
    row.access_key_id = key_id
    row.secret_sealed = seal(secret, seal_context(key_id))
    session.flush()
    return row, secret


def read_valid_token(session: Session, token: str) -> tuple[str, str] | None:
    """(token id, principal) of a token that is neither revoked nor expired, and whose
    principal still exists."""
    row = session.execute(
        select(ApiToken.id, ApiToken.principal)
        .join(Principal, Principal.name == ApiToken.principal)
        .where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def token_exists(session: Session, token: str) -> bool:
    found = session.execute(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token)))
    return found.first() is not None


def touch_token(session: Session, token_id: str, at: datetime | None = None) -> None:
    """Record a token's last use (the audit writer batches these)."""
    when = at or utcnow()
    session.execute(
        update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=when),
        # who the token speaks for is unchanged (server/identities.py)
        execution_options={"leaves_access": True},
    )


def read_token(session: Session, token_id: str) -> ApiToken:
    row = session.get(ApiToken, token_id) if is_uuid(token_id) else None
    if row is None:
        raise NotFoundError(f"No token {token_id} exists; see `fleetrun tokens list`.")
    return row


def read_tokens(session: Session, principal: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.principal, ApiToken.created_at)
    if principal is not None:
        query = query.where(ApiToken.principal == principal)
    return list(session.execute(query).scalars())


def revoke_token(session: Session, token_id: str) -> ApiToken:
    """Revoke a token (idempotent): it stops working on the next request."""
    row = read_token(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def to_schema(row: ApiToken, now: datetime | None = None) -> schemas.Token:
    now = now or utcnow()
    return schemas.Token(
        id=row.id,
        principal=row.principal,
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        access_key_id=row.access_key_id,
        active=row.revoked_at is None and (row.expires_at is None or row.expires_at > now),
    )
