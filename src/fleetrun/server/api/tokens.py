"""API tokens of principals: created (shown once), listed (never their secret), revoked."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.schemas import access as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.admins import keeping_an_administrator
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import tokens as store

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateToken"))
async def create_token(
    request: Request,
    body: schemas.TokenCreate,
    caller: Annotated[Caller, Depends(authorize("CreateToken"))],
) -> schemas.TokenCreated:
    """A bearer token, or with `aws` an access key for SigV4 clients (the SSM-compatible
    API); of `principal`, by default the caller's own. Its secret is in this answer only."""
    principal = body.principal or caller.principal
    caller.require("CreateToken", access.frn("principal", principal))
    state = state_of(request)
    now = state.clock.now()
    expires_at = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None

    def create(tx: Tx) -> schemas.TokenCreated:
        if body.aws:
            row, secret = store.create_access_key(
                tx.session,
                principal,
                state.secrets.seal,
                description=body.description,
                expires_at=expires_at,
            )
            shown = store.to_schema(row, now).model_dump()
            return schemas.TokenCreated(**shown, secret_access_key=secret)
        row, token = store.create_token(
            tx.session, principal, description=body.description, expires_at=expires_at
        )
        return schemas.TokenCreated(**store.to_schema(row, now).model_dump(), token=token)

    return await state_of(request).db.write(create)


@router.get("", **action("ListTokens"))
async def list_tokens(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListTokens"))],
    principal: str | None = None,
) -> Page[schemas.Token]:
    now = state_of(request).clock.now()

    def read(session: Session) -> list[schemas.Token]:
        return [
            store.to_schema(row, now)
            for row in store.read_tokens(session, principal)
            if caller.allows("ListTokens", access.frn("principal", row.principal))
        ]

    return Page(items=await state_of(request).db.read(read))


@router.delete("/{token_id}", **action("RevokeToken"))
async def revoke_token(
    request: Request,
    token_id: str,
    caller: Annotated[Caller, Depends(authorize("RevokeToken"))],
) -> schemas.Token:
    def revoke(tx: Tx) -> schemas.Token:
        row = store.read_token(tx.session, token_id)
        caller.require("RevokeToken", access.frn("principal", row.principal))
        revoked = keeping_an_administrator(
            tx.session,
            lambda: store.revoke_token(tx.session, token_id),
            f"Revoking token {token_id} of {row.principal}",
        )
        return store.to_schema(revoked)

    return await state_of(request).db.write(revoke)
