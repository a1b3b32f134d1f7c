from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from fleetrun.schemas import groups as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import groups as store

router = APIRouter(prefix="/v1/groups", tags=["groups"])


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateGroup"))
async def create_group(
    request: Request,
    body: schemas.GroupCreate,
    caller: Annotated[Caller, Depends(authorize("CreateGroup"))],
) -> schemas.Group:
    def create(tx: Tx) -> schemas.Group:
        return store.to_schema(tx.session, store.create_group(tx.session, body))

    return await state_of(request).db.write(create)


@router.get("", **action("ListGroups"))
async def list_groups(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListGroups"))]
) -> Page[schemas.Group]:
    def read(session: Session) -> Page[schemas.Group]:
        return Page(items=[store.to_schema(session, g) for g in store.read_groups(session)])

    return await state_of(request).db.read(read)


@router.get("/{name}", **action("GetGroup"))
async def get_group(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetGroup"))]
) -> schemas.Group:
    return await state_of(request).db.read(lambda s: store.to_schema(s, store.read_group(s, name)))


@router.delete("/{name}", status_code=204, **action("DeleteGroup"))
async def delete_group(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("DeleteGroup"))]
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_group(tx.session, name))
