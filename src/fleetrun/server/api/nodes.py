from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.tags import parse_tags, retagged
from fleetrun.core.targets import check
from fleetrun.schemas import nodes as schemas
from fleetrun.schemas.base import Page
from fleetrun.schemas.commands import ResolvedNode, TargetsResolve
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.engine import invocations as engine_invocations
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import nodes as store

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
targets_router = APIRouter(prefix="/v1/targets", tags=["nodes"])


@router.get("", **action("ListNodes"))
async def list_nodes(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListNodes"))],
    tag: Annotated[list[str] | None, Query(description="KEY=VALUE, repeatable (ANDed)")] = None,
    ping_status: str | None = None,
) -> Page[schemas.Node]:
    tags = parse_tags(tag or [])

    def read(session: Session) -> list[schemas.Node]:
        nodes = store.read_nodes(session, ping_status=ping_status, tags=tags)
        node_tags = store.read_tags(session, (n.id for n in nodes))
        return [
            store.to_schema(n, node_tags[n.id])
            for n in nodes
            if caller.allows(
                "ListNodes", access.frn("node", n.id), access.node_context(node_tags[n.id])
            )
        ]

    return Page(items=await state_of(request).db.read(read))


@targets_router.post("/resolve", **action("ListNodes"))
async def resolve_targets(
    request: Request,
    body: TargetsResolve,
    caller: Annotated[Caller, Depends(authorize("ListNodes"))],
) -> list[ResolvedNode]:
    """The nodes these targets select now, with the keys to seal secrets to them."""

    def resolve(session: Session) -> list[ResolvedNode]:
        ids = command_store.resolve_targets(session, check(list(body.targets)))
        nodes = {n.id: n for n in store.read_nodes(session, ids=ids)}
        tags = store.read_tags(session, ids)
        return [
            ResolvedNode(id=i, name=nodes[i].name, seal_public_key=nodes[i].seal_public_key)
            for i in ids
            if caller.allows("ListNodes", access.frn("node", i), access.node_context(tags[i]))
        ]

    return await state_of(request).db.read(resolve)


@router.delete("/{node_id}", status_code=204, **action("DeleteNode"))
async def delete_node(
    request: Request, node_id: str, caller: Annotated[Caller, Depends(authorize("DeleteNode"))]
) -> None:
    """Deregister a node: its agent can no longer connect, and what it had not finished
    ends Undeliverable. Its history stays."""
    state = state_of(request)

    def delete(tx: Tx) -> None:
        found = store.read_node(tx.session, node_id)
        tags = store.read_tags(tx.session, [found.id])[found.id]
        caller.require("DeleteNode", access.frn("node", found.id), access.node_context(tags))
        node = store.delete_node(tx.session, node_id)
        touched = engine_invocations.node_deleted(tx.session, node.id)
        state.refresh_commands(tx, touched)

    await state.db.write(delete)
    await state.gateway.node_deleted(node_id)


@router.patch("/{node_id}/tags", **action("TagNode"))
async def tag_node(
    request: Request,
    node_id: str,
    body: schemas.NodeTagsUpdate,
    caller: Annotated[Caller, Depends(authorize("TagNode"))],
) -> schemas.Node:
    """Set and remove tags. Decided on the node with its tags before and after, so that
    no one can tag a node into (or out of) what a policy lets them touch."""

    def change(tx: Tx) -> schemas.Node:
        node = store.read_node(tx.session, node_id)
        before = store.read_tags(tx.session, [node.id])[node.id]
        after = retagged(before, body.set, body.remove)
        for tags in (before, after):
            caller.require("TagNode", access.frn("node", node.id), access.node_context(tags))
        store.write_tags(tx.session, node.id, after)
        return store.to_schema(node, after)

    return await state_of(request).db.write(change)


@router.get("/{node_id}", **action("GetNode"))
async def get_node(
    request: Request, node_id: str, caller: Annotated[Caller, Depends(authorize("GetNode"))]
) -> schemas.Node:
    def read(session: Session) -> schemas.Node:
        node = store.read_node(session, node_id)
        tags = store.read_tags(session, [node.id])[node.id]
        caller.require("GetNode", access.frn("node", node.id), access.node_context(tags))
        return store.to_schema(node, tags)

    return await state_of(request).db.read(read)
