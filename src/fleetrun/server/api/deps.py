"""What routes share: the server state, and the caller behind the bearer token.

`authorize("SendCommand")` is the dependency every operator route declares; it
authenticates the token and asks the authorizer about the action. The action is also
written into the OpenAPI document (`x-fleetrun-action`), so a test can walk every
route and check that none is left open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from fleetrun.core.errors import AccessDeniedError, AuthenticationError
from fleetrun.server.authz import Caller
from fleetrun.server.state import ServerState
from fleetrun.server.store import tokens as token_store

MISSING_CREDENTIALS = (
    "This request needs an API token: pass --token, set FLEETRUN_TOKEN, or run `fleetrun login`."
)
WRONG_CREDENTIALS = (
    "The API token is not valid (unknown, expired or revoked): check it, or ask an "
    "administrator for a new one."
)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.fleet
    return state


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: Request) -> Caller:
    token = bearer(request)
    if token is None:
        raise AuthenticationError(MISSING_CREDENTIALS)
    row = await state_of(request).db.read(lambda s: token_store.read_valid_token(s, token))
    if row is None:
        raise AuthenticationError(WRONG_CREDENTIALS)
    token_id, principal = row
    return Caller(
        principal=principal,
        token_id=token_id,
        source_ip=request.client.host if request.client else None,
    )


def authorize(action: str) -> Callable[[Request], Awaitable[Caller]]:
    full = f"fleetrun:{action}"

    async def dependency(request: Request) -> Caller:
        caller = await authenticate(request)
        if not await state_of(request).authorizer.allowed(caller, full):
            raise AccessDeniedError(
                f"{caller.principal} may not perform {full}: ask an administrator for a "
                "policy that allows it."
            )
        request.state.caller = caller
        request.state.action = full
        return caller

    dependency.__name__ = f"authorize_{action}"
    return dependency


def action(name: str) -> dict[str, Any]:
    """Route keyword arguments that record the action in the OpenAPI document."""
    return {"openapi_extra": {"x-fleetrun-action": f"fleetrun:{name}"}}
