"""Principals (users and service accounts), what is attached to them, and simulating
what they may do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.policy import evaluate
from fleetrun.schemas import access as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.admins import keeping_an_administrator
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
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
    given, its name and the current time)."""

    def read(session: Session) -> schemas.SimulateResult:
        store.read_principal(session, name)
        policies = store.effective_policies(session, name)
        context = {
            **access.request_context(name, None, caller.at),
            **body.context,
        }
        target = access.action_name(body.action)
        decision = evaluate(policies, target, body.resource, context)
        return schemas.SimulateResult(
            decision="allow" if decision.allowed else "deny",
            matched_statements=[
                schemas.MatchedStatement(**m) for m in decision.matched_statements()
            ],
            reason=decision.reason(target, body.resource),
        )

    return await state_of(request).db.read(read)
