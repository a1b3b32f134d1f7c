"""Console pages: sign-in and sign-out, the fleet and a node.

Each page declares the same `authorize(...)` dependency as the API route it mirrors and
calls that route's function with the caller, so a page shows exactly what the API would
answer the signed-in principal, and refuses what it would refuse.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request as StarletteRequest
from starlette.responses import RedirectResponse, Response

from fleetrun.core import access
from fleetrun.core.errors import FleetrunError, ValidationError
from fleetrun.core.statuses import PingStatus
from fleetrun.core.tags import parse_tags
from fleetrun.schemas.base import describe
from fleetrun.schemas.nodes import NodeTagsUpdate
from fleetrun.server.api import commands as commands_api
from fleetrun.server.api import nodes as nodes_api
from fleetrun.server.api import runcommands as runcommands_api
from fleetrun.server.api.deps import authenticate, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.store import principals as principal_store
from fleetrun.server.web import fleet, session
from fleetrun.server.web.render import field, form, may, page


async def guard(request: Request) -> AsyncIterator[None]:
    """Every console route: a state-changing request must be same-site and carry the
    session's CSRF token. A form value the API's request models refuse (too long, out
    of range) is a 400 with pydantic's complaint in one sentence, as over the API."""
    await session.check_csrf(request, state_of(request).secrets)
    try:
        yield
    except PydanticValidationError as exc:
        raise ValidationError(describe(exc.errors())) from exc


router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/nodes", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/ui/nodes") -> Response:
    return page(request, "sign_in.html", None, {"next": _local(next)})


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the token as the API does (same failures, same rate limit on wrong tokens)
    and answer with the session cookie."""
    fields = await form(request)
    token = field(fields, "token")
    target = _local(field(fields, "next", "/ui/nodes"))
    if not token:
        raise ValidationError("Paste an API token to sign in (`fleetrun tokens create`).")
    scope = {**request.scope, "headers": [(b"authorization", f"Bearer {token}".encode())]}
    await authenticate(StarletteRequest(scope))
    state = state_of(request)
    identity = await state.db.read(lambda s: principal_store.identify(s, token, state.clock.now()))
    if identity is None:  # revoked between the two reads
        await authenticate(StarletteRequest(scope))
    expires_at = identity.expires_at if identity is not None else None
    made = session.make(token, expires_at, time.time())
    value = session.encode(state.secrets, made)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        session.COOKIE,
        value,
        max_age=max(1, int(made.expires_at - time.time())),
        path="/ui",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out() -> Response:
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.delete_cookie(session.COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


@router.get("/nodes")
async def fleet_page(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListNodes"))],
    name: str = "",
    status: str = "",
    tag: str = "",
    group: str = "",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = fleet.PAGE_SIZE,
) -> Response:
    filters = fleet.FleetFilter(
        name=name.strip(),
        status=status.strip(),
        tags=parse_tags([t for t in tag.split() if t]),
        group=group.strip(),
    )
    if filters.group:
        caller.require("GetGroup", access.frn("group", filters.group))
    listed = await state_of(request).db.read(
        lambda s: fleet.read_fleet(s, caller, filters, cursor, limit)
    )
    context = {
        "nodes": listed.nodes,
        "next_cursor": listed.next_cursor,
        "filters": {"name": name, "status": status, "tag": tag, "group": group},
        "limit": limit,
        "statuses": [s.value for s in PingStatus],
    }
    name_ = "fleet_rows.html" if request.headers.get("hx-request") else "fleet.html"
    return page(request, name_, caller, context)


@router.get("/nodes/{node_id}")
async def node_page(
    request: Request, node_id: str, caller: Annotated[Caller, Depends(authorize("GetNode"))]
) -> Response:
    node = await nodes_api.get_node(request, node_id, caller)
    resource = access.frn("node", node.id)
    context = access.node_context(node.tags)
    invocations = None
    if may(caller, "ListCommandInvocations"):
        invocations = await _recent_invocations(request, caller, node.id)
    run_commands = None
    if may(caller, "ListRunCommands"):
        try:
            run_commands = await runcommands_api.list_run_commands(request, node.id, caller)
        except FleetrunError:
            run_commands = None
    return page(
        request,
        "node.html",
        caller,
        {
            "node": node,
            "may_tag": caller.allows("TagNode", resource, context),
            "may_send": caller.allows("SendCommand", resource, context),
            "may_put_rc": caller.allows("PutRunCommand", resource, context),
            "invocations": invocations,
            "run_commands": run_commands,
        },
    )


@router.post("/nodes/{node_id}/tags")
async def tag_node(
    request: Request, node_id: str, caller: Annotated[Caller, Depends(authorize("TagNode"))]
) -> Response:
    fields = await form(request)
    update = NodeTagsUpdate(
        set=parse_tags([t for t in field(fields, "set").split() if t]),
        remove=[k for k in field(fields, "remove").split() if k],
    )
    await nodes_api.tag_node(request, node_id, update, caller)
    return RedirectResponse(f"/ui/nodes/{node_id}", status_code=303)


async def _recent_invocations(request: Request, caller: Caller, node_id: str) -> list[object]:
    try:
        listed = await commands_api.list_all_invocations(
            request, caller, command=None, node=node_id, status=None, tag=None, since=None,
            until=None, details=False, limit=20, cursor=None,
        )  # fmt: skip
    except FleetrunError:
        return []
    return list(listed.items)


def _local(target: str) -> str:
    """Only a path inside the console: never a redirect to another site."""
    if target.startswith("/ui") and not target.startswith("//"):
        return target
    return "/ui/nodes"
