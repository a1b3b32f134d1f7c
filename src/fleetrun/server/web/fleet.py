"""The fleet page's listing: nodes filtered by name, status, tags and group, in pages
ordered by name (keyset paging, so the first page costs the same on 10,000 nodes as on
ten), each node kept only when the caller may list it (the API's own decision,
`ListNodes` on the node with its tags)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ValidationError
from fleetrun.schemas.nodes import Node as NodeSchema
from fleetrun.server.authz import Caller
from fleetrun.server.store import groups as group_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Node

PAGE_SIZE = 50
SCAN_ROWS = 2000  # read at most this many rows per page, so a narrow policy cannot stall it


@dataclass(frozen=True)
class FleetFilter:
    name: str = ""
    status: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    group: str = ""


@dataclass(frozen=True)
class FleetPage:
    nodes: list[NodeSchema]
    next_cursor: str | None


def encode_cursor(name: str, node_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name, node_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        name, node_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(name), str(node_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValidationError(
            "The page cursor is not one this console made: go back to the first page."
        ) from exc


def read_fleet(
    session: Session,
    caller: Caller,
    filters: FleetFilter,
    cursor: str | None,
    limit: int = PAGE_SIZE,
) -> FleetPage:
    query = node_store.select_nodes(ping_status=filters.status, tags=filters.tags)
    if filters.name:
        pattern = f"%{filters.name.lower()}%"
        query = query.where(or_(Node.name.ilike(pattern), Node.id.ilike(pattern)))
    if filters.group:
        group = group_store.read_group(session, filters.group)
        query = query.where(Node.id.in_(group_store.members(session, group)))
    after = decode_cursor(cursor) if cursor else None  # the (name, id) last read
    kept: list[NodeSchema] = []
    scanned = 0
    while len(kept) < limit and scanned < SCAN_ROWS:
        batch = query if after is None else query.where(_after(*after))
        rows = list(session.execute(batch.limit(limit * 2)).scalars())
        tags = node_store.read_tags(session, (n.id for n in rows))
        for node in rows:
            scanned += 1
            after = (node.name, node.id)
            context = access.node_context(tags[node.id])
            if caller.allows("ListNodes", access.frn("node", node.id), context):
                kept.append(node_store.to_schema(node, tags[node.id]))
                if len(kept) == limit:
                    break
        if len(rows) < limit * 2 and (not rows or after == (rows[-1].name, rows[-1].id)):
            return FleetPage(kept, None)  # read to the end
    assert after is not None
    return FleetPage(kept, encode_cursor(*after))


def _after(name: str, node_id: str) -> ColumnElement[bool]:
    """Past (name, id) in the listing's order."""
    return or_(Node.name > name, and_(Node.name == name, Node.id > node_id))
