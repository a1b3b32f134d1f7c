"""Roles: named sets of policies (Reader, Operator, Administrator, and custom ones)."""

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
from fleetrun.server.store import roles as store

router = APIRouter(prefix="/v1/roles", tags=["roles"])
ROLE = "role/{name}"


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateRole"))
async def create_role(
    request: Request,
    body: schemas.RoleCreate,
    caller: Annotated[Caller, Depends(authorize("CreateRole"))],
) -> schemas.Role:
    caller.require("CreateRole", access.frn("role", body.name))

    def create(tx: Tx) -> schemas.Role:
        store.create_role(tx.session, body.name, body.policies, description=body.description)
        return store.read_role(tx.session, body.name)

    return await state_of(request).db.write(create)


@router.put("/{name}", **action("PutRole"))
async def put_role(
    request: Request,
    response: Response,
    name: str,
    body: schemas.RolePut,
    caller: Annotated[Caller, Depends(authorize("PutRole", ROLE))],
) -> schemas.Role:
    def put(tx: Tx) -> tuple[schemas.Role, bool]:
        _, created = store.put_role(tx.session, name, body.policies, description=body.description)
        return store.read_role(tx.session, name), created

    role, created = await state_of(request).db.write(put)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return role


@router.get("", **action("ListRoles"))
async def list_roles(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListRoles"))]
) -> Page[schemas.Role]:
    def read(session: Session) -> list[schemas.Role]:
        return [
            r
            for r in store.read_roles(session)
            if caller.allows("ListRoles", access.frn("role", r.name))
        ]

    return Page(items=await state_of(request).db.read(read))


@router.get("/{name}", **action("GetRole"))
async def get_role(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetRole", ROLE))],
) -> schemas.Role:
    return await state_of(request).db.read(lambda s: store.read_role(s, name))


@router.delete("/{name}", status_code=204, **action("DeleteRole"))
async def delete_role(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteRole", ROLE))],
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_role(tx.session, name))
