"""The fleet page's listing: nodes filtered by name, status, tags and group, in pages
ordered by name (keyset paging, so the first page costs the same on 10,000 nodes as on
ten), each node kept only when the caller may list it (the API's own decision,
`ListNodes` on the node with its tags)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ValidationError
from fleetrun.schemas.nodes import Node as NodeSchema
from fleetrun.server.authz import Caller
from fleetrun.server.store import groups as group_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Node, NodeTag

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
    query = select(Node).where(Node.deleted_at.is_(None)).order_by(Node.name, Node.id)
    if filters.name:
        pattern = f"%{filters.name.lower()}%"
        query = query.where(or_(Node.name.ilike(pattern), Node.id.ilike(pattern)))
    if filters.status:
        query = query.where(Node.ping_status == filters.status)
    for key, value in filters.tags.items():
        query = query.where(
            Node.id.in_(select(NodeTag.node_id).where(NodeTag.key == key, NodeTag.value == value))
        )
    if filters.group:
        group = group_store.read_group(session, filters.group)
        query = query.where(Node.id.in_(group_store.members(session, group)))
    if cursor:
        name, node_id = decode_cursor(cursor)
        query = query.where(or_(Node.name > name, and_(Node.name == name, Node.id > node_id)))
    kept: list[NodeSchema] = []
    scanned = 0
    last: Node | None = None
    while len(kept) < limit and scanned < SCAN_ROWS:
        batch_query = query
        if last is not None:
            batch_query = batch_query.where(
                or_(Node.name > last.name, and_(Node.name == last.name, Node.id > last.id))
            )
        rows = list(session.execute(batch_query.limit(limit * 2)).scalars())
        if not rows:
            return FleetPage(kept, None)
        exhausted = len(rows) < limit * 2
        tags = node_store.read_tags(session, (n.id for n in rows))
        for node in rows:
            scanned += 1
            last = node
            context = access.node_context(tags[node.id])
            if caller.allows("ListNodes", access.frn("node", node.id), context):
                kept.append(node_store.to_schema(node, tags[node.id]))
                if len(kept) == limit:
                    break
        if exhausted and last is rows[-1]:
            return FleetPage(kept, None)
    assert last is not None
    return FleetPage(kept, encode_cursor(last.name, last.id))
