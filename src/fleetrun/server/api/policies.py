"""Policies: create, replace, read, list, delete. A document that is not valid is
refused with a sentence naming the fault and its place, and nothing is stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.schemas import access as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import policies as store

router = APIRouter(prefix="/v1/policies", tags=["policies"])
POLICY = "policy/{name}"


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreatePolicy"))
async def create_policy(
    request: Request,
    body: schemas.PolicyCreate,
    caller: Annotated[Caller, Depends(authorize("CreatePolicy"))],
) -> schemas.Policy:
    caller.require("CreatePolicy", access.frn("policy", body.name))

    def create(tx: Tx) -> schemas.Policy:
        row = store.create_policy(
            tx.session,
            body.name,
            body.document,
            description=body.description,
            known_actions=access.ACTIONS,
        )
        return store.to_schema(row)

    return await state_of(request).db.write(create)


@router.put("/{name}", **action("PutPolicy"))
async def put_policy(
    request: Request,
    response: Response,
    name: str,
    body: schemas.PolicyPut,
    caller: Annotated[Caller, Depends(authorize("PutPolicy", POLICY))],
) -> schemas.Policy:

    def put(tx: Tx) -> tuple[schemas.Policy, bool]:
        row, created = store.put_policy(
            tx.session,
            name,
            body.document,
            description=body.description,
            known_actions=access.ACTIONS,
        )
        return store.to_schema(row), created

    policy, created = await state_of(request).db.write(put)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return policy


@router.get("", **action("ListPolicies"))
async def list_policies(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListPolicies"))]
) -> Page[schemas.Policy]:
    def read(session: Session) -> list[schemas.Policy]:
        return [
            p
            for p in store.read_policies(session)
            if caller.allows("ListPolicies", access.frn("policy", p.name))
        ]

    return Page(items=await state_of(request).db.read(read))


@router.get("/{name}", **action("GetPolicy"))
async def get_policy(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetPolicy", POLICY))],
) -> schemas.Policy:
    return await state_of(request).db.read(lambda s: store.read_policy(s, name))


@router.delete("/{name}", status_code=204, **action("DeletePolicy"))
async def delete_policy(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeletePolicy", POLICY))],
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_policy(tx.session, name))
