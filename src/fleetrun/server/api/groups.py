from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.schemas import groups as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.api.runcommands import admit
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import group_runcommands as group_run_command_store
from fleetrun.server.store import groups as store
from fleetrun.server.store import nodes as node_store

router = APIRouter(prefix="/v1/groups", tags=["groups"])
GROUP = "group/{name}"


def _shown(session: Session, caller: Caller, group: schemas.Group) -> schemas.Group:
    """A group as the caller may see it: only the members it may list (each member
    node is decided with its tags)."""
    tags = node_store.read_tags(session, group.members)
    members = [
        n
        for n in group.members
        if caller.allows("ListNodes", access.frn("node", n), access.node_context(tags[n]))
    ]
    return group.model_copy(update={"members": members})


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateGroup"))
async def create_group(
    request: Request,
    body: schemas.GroupCreate,
    caller: Annotated[Caller, Depends(authorize("CreateGroup"))],
) -> schemas.Group:
    caller.require("CreateGroup", access.frn("group", body.name))

    def create(tx: Tx) -> schemas.Group:
        group = store.create_group(tx.session, body)
        # A group made again under an old name takes up its run commands: on each
        # member as their author may (decided as that principal, not as the caller).
        if group_run_command_store.sync(tx.session, admit(state_of(request))):
            state_of(request).wake_dispatcher(tx)
        return store.to_schema(tx.session, group)

    return await state_of(request).db.write(create)


@router.get("", **action("ListGroups"))
async def list_groups(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListGroups"))]
) -> Page[schemas.Group]:
    def read(session: Session) -> Page[schemas.Group]:
        return Page(
            items=[
                _shown(session, caller, store.to_schema(session, g))
                for g in store.read_groups(session)
                if caller.allows("ListGroups", access.frn("group", g.name))
            ]
        )

    return await state_of(request).db.read(read)


@router.get("/{name}", **action("GetGroup"))
async def get_group(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetGroup", GROUP))]
) -> schemas.Group:
    return await state_of(request).db.read(
        lambda s: _shown(s, caller, store.to_schema(s, store.read_group(s, name)))
    )


@router.put("/{name}", **action("UpdateGroup"))
async def update_group(
    request: Request,
    name: str,
    body: schemas.GroupUpdate,
    caller: Annotated[Caller, Depends(authorize("UpdateGroup", GROUP))],
) -> schemas.Group:
    """New members; the group's run commands go to members that join (as their author
    may), as when a node joins a tag group."""

    def update(tx: Tx) -> schemas.Group:
        group = store.update_group(tx.session, name, body)
        if group_run_command_store.sync(tx.session, admit(state_of(request))):
            state_of(request).wake_dispatcher(tx)
        return _shown(tx.session, caller, store.to_schema(tx.session, group))

    return await state_of(request).db.write(update)


@router.delete("/{name}", status_code=204, **action("DeleteGroup"))
async def delete_group(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("DeleteGroup", GROUP))]
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_group(tx.session, name))
