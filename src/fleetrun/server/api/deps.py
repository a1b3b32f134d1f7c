"""What routes share: the server state, and the caller behind the bearer token.

`authorize("SendCommand")` is the dependency every operator route declares: it
authenticates the token, holds the principal to its request rate, reads its effective
policies (afresh: a change counts from the next request) and decides the action before
the route runs (see `fleetrun.server.authz`). With `resource="policy/{name}"` the
decision is final there; without, the route decides per resource once it has loaded it.
The action is also written into the OpenAPI document (`x-fleetrun-action`), so a test
can walk every route and check that none is left open.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from fleetrun.core import access, logs
from fleetrun.core.errors import AuthenticationError, FleetrunError, LimitExceededError
from fleetrun.core.ids import is_node_id
from fleetrun.server.audit import AuditEntry
from fleetrun.server.authz import Caller, deny, gate
from fleetrun.server.state import ServerState
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import tokens as token_store
from fleetrun.server.store.principals import Identity

MISSING_CREDENTIALS = (
    "This request needs an API token: pass --token, set FLEETRUN_TOKEN, or run `fleetrun login`."
)
WRONG_CREDENTIALS = (
    "The API token is not valid (unknown, expired or revoked): check it, or ask an "
    "administrator for a new one."
)


# Described in the OpenAPI document (the docs page's Authorize button); the token is read
# and checked by `authenticate`, which words its own errors.
BEARER = HTTPBearer(
    auto_error=False,
    description="An API token (`fleetrun tokens create`, or admin.token in the data dir).",
)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.fleet
    return state


def audit_entry(request: Request) -> AuditEntry | None:
    entry: AuditEntry | None = getattr(request.state, "audit", None)
    return entry


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _identify(state: ServerState, token: str, at: datetime) -> Identity | None:
    """Who the token speaks for."""
    return await remembered_identity(
        state, token_store.hash_token(token), at, lambda s: principal_store.identify(s, token, at)
    )


async def remembered_identity(
    state: ServerState,
    key: str,
    at: datetime,
    look_up: Callable[[Session], Identity | None],
) -> Identity | None:
    """Who a credential (cache key `key`) speaks for: remembered between requests until
    access changes (server/identities.py), else looked up (and remembered)."""
    identity = state.identities.get(key, at)
    if identity is None:
        generation = state.identities.generation
        identity = await state.db.read(look_up)
        if identity is not None:
            state.identities.put(key, identity, generation)
    return identity


async def authenticate(request: Request) -> Caller:
    state = state_of(request)
    source = request.client.host if request.client else "-"
    # An address that has failed too often is turned away before its token is even
    # looked at: a 429 after the lookup would tell a guesser which token was right.
    _hold_back(state, source, state.unauthenticated.wait_s(source, state.clock.monotonic()))
    token = bearer(request)
    at = state.clock.now()
    identity = await _identify(state, token, at) if token is not None else None
    if identity is None:
        _hold_back(state, source, state.unauthenticated.take(source, state.clock.monotonic()))
        raise AuthenticationError(MISSING_CREDENTIALS if token is None else WRONG_CREDENTIALS)
    return caller_of(request, identity)


def caller_of(request: Request, identity: Identity) -> Caller:
    """The caller an authenticated identity makes (bearer token or access key): logged
    and audited as its principal, its token's use noted, held to its request rate."""
    state = state_of(request)
    logs.bind(principal=identity.principal)
    entry = audit_entry(request)
    if entry is not None:
        entry.principal = identity.principal
    now = state.clock.monotonic()
    state.audit.token_used(identity.token_id, now)
    wait_s = state.throttle.take(identity.principal, now)
    if wait_s is not None:
        raise LimitExceededError(
            f"{identity.principal} is over its request rate ({state.throttle.rate_per_s:g} "
            f"per second): retry in {math.ceil(wait_s)} second(s), and slow the script down.",
            retry_after_s=wait_s,
        )
    return Caller(
        principal=identity.principal,
        token_id=identity.token_id,
        source_ip=request.client.host if request.client else None,
        attributes={"kind": identity.kind},
        policies=identity.policies,
        request_id=getattr(request.state, "request_id", None),
        on_denied=partial(state.audit.denied, entry),
        on_allowed=partial(_note_resource, entry),
    )


async def recheck(
    request: Request, caller: Caller, action: str, resource: str
) -> FleetrunError | None:
    """For a request that lasts (a stream): decide it again on the credentials as they
    are now. The error to close it with when the token was revoked or expired, its
    principal deleted, or its policies no longer allow `action` on `resource`; else None."""
    token = bearer(request) or ""
    state = state_of(request)
    identity = await state.db.read(lambda s: principal_store.identify(s, token))
    if identity is None or identity.principal != caller.principal:
        return AuthenticationError(
            "The API token is no longer valid (revoked or expired, or its principal was "
            "deleted): this stream is closed; ask an administrator for a new token."
        )
    now = dataclasses.replace(caller, policies=identity.policies, at=datetime.now(UTC))
    full = access.action_name(action)
    decision = gate(now, full, resource)
    if not decision.allowed:
        return deny(now, full, resource, decision, fails_request=False)
    return None


def _hold_back(state: ServerState, source: str, wait_s: float | None) -> None:
    if wait_s is not None:
        raise LimitExceededError(
            f"Too many requests without a valid API token from {source} (more than "
            f"{state.unauthenticated.burst} at "
            f"{state.unauthenticated.rate_per_s:g} per second): retry in {math.ceil(wait_s)} "
            "second(s) with a valid token.",
            retry_after_s=wait_s,
        )


def _note_resource(entry: AuditEntry | None, resource: str) -> None:
    """The audit record names the first resource a route decided on."""
    if entry is not None and entry.resource is None:
        entry.resource = resource


def authorize(action: str, resource: str | None = None) -> Callable[..., Awaitable[Caller]]:
    """The dependency for an operator route doing `action`. `resource` is "*" (the
    operation has no resource) or a template of the path's parameters, such as
    "policy/{name}"; leave it out when the route decides per loaded resource."""
    full = access.action_name(action)

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> Caller:
        entry = audit_entry(request)
        if entry is not None:
            entry.action = full
        caller = await authenticate(request)
        concrete = _resource(resource, request.path_params)
        admit(request, caller, full, concrete)
        return caller

    dependency.__name__ = f"authorize_{action}"
    return dependency


def admit(request: Request, caller: Caller, action: str, resource: str | None) -> None:
    """What every operation does once its caller is known, fleetrun's routes and SSM's
    alike: the action and resource recorded for the audit, the request decided at the
    gate on what is known before anything is loaded, and the caller kept for the route."""
    full = access.action_name(action)
    entry = audit_entry(request)
    if entry is not None:
        entry.action = full
        entry.resource = resource
    decision = gate(caller, full, resource)
    if not decision.allowed:
        raise deny(caller, full, resource or _named_node(request.path_params), decision)
    if entry is not None:
        entry.decision = "allow"
    request.state.caller = caller
    request.state.action = full


def _named_node(params: dict[str, Any]) -> str:
    """What a denial at the gate was about when the route decides on a resource it loads:
    the node its path names (the audit record and the error say which), else "*"."""
    node_id = params.get("node_id")
    return access.frn("node", node_id) if isinstance(node_id, str) and is_node_id(node_id) else "*"


def _resource(template: str | None, params: dict[str, Any]) -> str | None:
    if template is None or template == "*":
        return template
    return access.PREFIX + template.format(**params)


def action(name: str) -> dict[str, Any]:
    """Route keyword arguments that record the action in the OpenAPI document."""
    return {"openapi_extra": {"x-fleetrun-action": access.action_name(name)}}
