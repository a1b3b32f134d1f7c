"""Who may act on which commands and invocations: the decisions the command routes
share, fleetrun's (`server/api/commands.py`, `server/api/output.py`) and SSM's
(`server/ssm/commands.py`). An invocation is decided on its node, with the node's tags
and the command's document as condition keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.targets import Candidate
from fleetrun.server.authz import Caller, deny
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Command, Invocation


def command_resource(command: Command) -> tuple[str, dict[str, Any]]:
    """A command's resource name and its condition keys."""
    return access.frn("command", command.id), access.command_context(command.document_name)


def _node_contexts(
    session: Session, documents: dict[str, str], pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Condition keys of acting on invocations, per (command id, node id): the node's
    tags and the command's document."""
    tags = node_store.read_tags(session, {n for _, n in pairs})
    return {
        (c, n): {**access.command_context(documents.get(c)), **access.node_context(tags[n])}
        for c, n in pairs
    }


def readable_invocations(
    caller: Caller, action_name: str
) -> Callable[[Session, list[Invocation]], list[Invocation]]:
    """Keep the invocations the caller may read: each is decided on its node."""

    def keep(session: Session, rows: list[Invocation]) -> list[Invocation]:
        ids = {r.command_id for r in rows}
        found = session.execute(
            select(Command.id, Command.document_name).where(Command.id.in_(ids))
        ).all()
        documents = dict(found)
        contexts = _node_contexts(session, documents, [(r.command_id, r.node_id) for r in rows])
        return [
            r
            for r in rows
            if caller.allows(
                action_name, access.frn("node", r.node_id), contexts[(r.command_id, r.node_id)]
            )
        ]

    return keep


def require_invocation(session: Session, caller: Caller, command: Command, node_id: str) -> None:
    documents = {command.id: command.document_name}
    context = _node_contexts(session, documents, [(command.id, node_id)])[(command.id, node_id)]
    caller.require("GetCommandInvocation", access.frn("node", node_id), context)


def cancellable_nodes(
    session: Session, caller: Caller, command: Command, node_ids: list[str] | None
) -> list[str] | None:
    """The nodes the caller may cancel this command on (None: all of them). A node
    named and not allowed refuses the request; otherwise the nodes not allowed are
    left running (each recorded as a denial), unless that is all of them."""
    wanted = node_ids or list(
        session.execute(select(Invocation.node_id).where(Invocation.command_id == command.id))
        .scalars()
        .all()
    )
    tags = node_store.read_tags(session, wanted)
    context = access.command_context(command.document_name)
    if node_ids:
        for node_id in node_ids:
            node = {**context, **access.node_context(tags.get(node_id, {}))}
            caller.require("CancelCommand", access.frn("node", node_id), node)
        return node_ids
    nodes = [Candidate(id=n, tags=tags[n]) for n in wanted]
    denied = caller.denied_nodes("CancelCommand", nodes, context)
    if not denied:
        return None
    allowed = [n for n in wanted if n not in denied]
    if not allowed:
        first = access.frn("node", wanted[0])
        decision = caller.decide(
            "CancelCommand", first, {**context, **access.node_context(tags[wanted[0]])}
        )
        raise deny(caller, access.action_name("CancelCommand"), first, decision)
    return allowed
