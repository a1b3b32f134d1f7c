"""API tokens: random secrets shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fleetrun.core.ids import new_uuid
from fleetrun.server.store.tables import ApiToken, utcnow

PREFIX = "frt_"


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


def read_valid_token(session: Session, token: str) -> tuple[str, str] | None:
    """(token id, principal) of a token that is neither revoked nor expired."""
    row = session.execute(
        select(ApiToken.id, ApiToken.principal).where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


def token_exists(session: Session, token: str) -> bool:
    found = session.execute(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token)))
    return found.first() is not None


def touch_token(session: Session, token_id: str) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))
