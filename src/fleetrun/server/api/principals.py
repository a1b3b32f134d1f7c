"""Principals (users and service accounts), what is attached to them, and simulating
what they may do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.ids import is_node_id
from fleetrun.schemas import access as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.admins import keeping_an_administrator
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store import principals as store

router = APIRouter(prefix="/v1/principals", tags=["principals"])
PRINCIPAL = "principal/{name}"


def _read(session: Session, name: str) -> schemas.Principal:
    return store.to_schema(
        store.read_principal(session, name), store.read_attachments(session, name)
    )


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreatePrincipal"))
async def create_principal(
    request: Request,
    body: schemas.PrincipalCreate,
    caller: Annotated[Caller, Depends(authorize("CreatePrincipal"))],
) -> schemas.Principal:
    caller.require("CreatePrincipal", access.frn("principal", body.name))

    def create(tx: Tx) -> schemas.Principal:
        store.create_principal(tx.session, body.name, body.kind, description=body.description)
        return _read(tx.session, body.name)

    return await state_of(request).db.write(create)


@router.get("", **action("ListPrincipals"))
async def list_principals(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListPrincipals"))]
) -> Page[schemas.Principal]:
    def read(session: Session) -> list[schemas.Principal]:
        return [
            store.to_schema(row, store.read_attachments(session, row.name))
            for row in store.read_principals(session)
            if caller.allows("ListPrincipals", access.frn("principal", row.name))
        ]

    return Page(items=await state_of(request).db.read(read))


@router.get("/{name}", **action("GetPrincipal"))
async def get_principal(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetPrincipal", PRINCIPAL))],
) -> schemas.Principal:
    return await state_of(request).db.read(lambda s: _read(s, name))


@router.delete("/{name}", status_code=204, **action("DeletePrincipal"))
async def delete_principal(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeletePrincipal", PRINCIPAL))],
) -> None:
    await state_of(request).db.write(
        lambda tx: keeping_an_administrator(
            tx.session, lambda: store.delete_principal(tx.session, name), f"Deleting {name}"
        )
    )


@router.put("/{name}/policies/{policy}", **action("AttachPrincipalPolicy"))
async def attach_policy(
    request: Request,
    name: str,
    policy: str,
    caller: Annotated[Caller, Depends(authorize("AttachPrincipalPolicy", PRINCIPAL))],
) -> schemas.Principal:
    return await _change(request, name, lambda s: store.attach(s, name, "policy", policy))


@router.delete("/{name}/policies/{policy}", **action("DetachPrincipalPolicy"))
async def detach_policy(
    request: Request,
    name: str,
    policy: str,
    caller: Annotated[Caller, Depends(authorize("DetachPrincipalPolicy", PRINCIPAL))],
) -> schemas.Principal:
    return await _change(
        request,
        name,
        lambda s: store.detach(s, name, "policy", policy),
        f"Detaching policy {policy} from {name}",
    )


@router.put("/{name}/roles/{role}", **action("AttachPrincipalRole"))
async def attach_role(
    request: Request,
    name: str,
    role: str,
    caller: Annotated[Caller, Depends(authorize("AttachPrincipalRole", PRINCIPAL))],
) -> schemas.Principal:
    return await _change(request, name, lambda s: store.attach(s, name, "role", role))


@router.delete("/{name}/roles/{role}", **action("DetachPrincipalRole"))
async def detach_role(
    request: Request,
    name: str,
    role: str,
    caller: Annotated[Caller, Depends(authorize("DetachPrincipalRole", PRINCIPAL))],
) -> schemas.Principal:
    return await _change(
        request,
        name,
        lambda s: store.detach(s, name, "role", role),
        f"Detaching role {role} from {name}",
    )


async def _change(
    request: Request, name: str, change: Callable[[Session], None], what: str | None = None
) -> schemas.Principal:
    """Make `change`; one that takes something away (`what` says what) must leave an
    administrator with a working token."""

    def run(tx: Tx) -> schemas.Principal:
        if what is None:
            change(tx.session)
        else:
            keeping_an_administrator(tx.session, lambda: change(tx.session), what)
        return _read(tx.session, name)

    return await state_of(request).db.write(run)


@router.post("/{name}/simulate", **action("SimulatePrincipalPolicy"))
async def simulate(
    request: Request,
    name: str,
    body: schemas.SimulateRequest,
    caller: Annotated[Caller, Depends(authorize("SimulatePrincipalPolicy", PRINCIPAL))],
) -> schemas.SimulateResult:
    """Decide ACTION on RESOURCE for the principal, with the context given (and, unless
    given, its name, the current time, and the tags of the node RESOURCE names: the keys
    a real request on that node is decided with)."""

    def read(session: Session) -> schemas.SimulateResult:
        store.read_principal(session, name)
        policies = store.effective_policies(session, name)
        resource = access.canonical_resource(body.resource)
        tags = _node_tags(session, resource)
        context = {
            **access.request_context(name, None, caller.at),
            **access.node_context(tags or {}),
            **body.context,
        }
        target = access.action_name(body.action)
        decision = access.decide(policies, target, resource, context)
        return schemas.SimulateResult(
            decision="allow" if decision.allowed else "deny",
            matched_statements=[
                schemas.MatchedStatement(**m) for m in decision.matched_statements()
            ],
            reason=decision.reason(target, body.resource),
            node_tags=tags,
            warnings=_warnings(resource, tags),
        )

    return await state_of(request).db.read(read)


def _node_tags(session: Session, resource: str) -> dict[str, str] | None:
    """The tags of the one node a resource names (frn:fleetrun:node/ID), as a request
    on it would see them (`access.node_context`); None for any other resource. A node
    named otherwise than by its id is refused: it would be decided without its tags. A
    node id that no node has gives None, and a warning in the result."""
    prefix = access.frn("node", "")
    if not resource.startswith(prefix) or any(c in resource for c in "*?"):
        return None
    node_id = resource[len(prefix) :]
    if not is_node_id(node_id):
        raise ValidationError(
            f"{resource} names no node id: a node's resource is frn:fleetrun:node/ID "
            f"(n- and 17 hex digits); `fleetrun nodes show {node_id}` shows its id."
        )
    try:
        node_store.read_node(session, node_id)
    except NotFoundError:
        return None  # a node to come: decided on the context given (and said so)
    return node_store.read_tags(session, [node_id])[node_id]


def _warnings(resource: str, tags: dict[str, str] | None) -> list[str]:
    prefix = access.frn("node", "")
    if tags is None and resource.startswith(prefix) and is_node_id(resource[len(prefix) :]):
        return [
            f"No node {resource[len(prefix) :]} exists: this was decided without a node's "
            "tags, on the context given alone."
        ]
    return []
