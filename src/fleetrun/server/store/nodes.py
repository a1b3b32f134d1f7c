"""Nodes: registration, tags, ping status, and the candidates targeting looks at."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from fleetrun.core import access, sealing
from fleetrun.core.errors import FleetrunError, NotFoundError, ValidationError
from fleetrun.core.ids import is_node_id, new_node_id
from fleetrun.core.inputs import check_label
from fleetrun.core.statuses import PingStatus
from fleetrun.core.tags import check_tags
from fleetrun.core.targets import Candidate, Target
from fleetrun.schemas import nodes as schemas
from fleetrun.schemas.agent import RegisterRequest
from fleetrun.server import events
from fleetrun.server.store import activations as activation_store
from fleetrun.server.store.tables import Activation, Node, NodeTag, utcnow


def _check_public_key(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError("The public key must be a base64 raw Ed25519 key of 32 bytes.")
    return text


def _check_seal_key(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        sealing.load_public_key(text)
    except sealing.SealError as exc:
        raise ValidationError(exc.args[0]) from None
    return text


@dataclass(frozen=True)
class Registered:
    node_id: str
    name: str


def register_nodes(
    session: Session, requests: Sequence[tuple[RegisterRequest, datetime]]
) -> list[Registered | FleetrunError]:
    """Trade each request's activation for a new node (or say why not), in order: the
    nodes are stored together, a few statements for the lot. Each request is decided
    as it would be alone (its code and expiry at its own `now`, then its node's
    fields, then the activation's limit, counting the requests before it)."""
    activations = activation_store.activations_by_id(
        session, (r.activation_id for r, _ in requests)
    )
    results: list[Registered | FleetrunError] = []
    taken: dict[str, list[int]] = {}  # activation id -> the requests it admits
    nodes: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}  # index -> row, tags
    for index, (request, now) in enumerate(requests):
        try:
            activation = activation_store.check_activation(
                activations.get(request.activation_id), request.activation_code, now
            )
            admitted = taken.setdefault(activation.id, [])
            if activation.registrations_count + len(admitted) >= activation.registration_limit:
                raise activation_store.limit_reached(activation)
            row, tags = _node_row(activation, request)
        except FleetrunError as exc:
            results.append(exc)
            continue
        admitted.append(index)
        nodes[index] = row, tags
        results.append(Registered(row["id"], row["name"]))
    for activation_id, admitted in taken.items():
        if not admitted or activation_store.claim_registrations(
            session, activation_id, len(admitted)
        ):
            continue
        # Another server counted registrations since the read: one at a time, in order,
        # until the limit says no (counts only grow: the rest are refused with it).
        claimed = 0
        while claimed < len(admitted) and activation_store.claim_registrations(
            session, activation_id, 1
        ):
            claimed += 1
        for index in admitted[claimed:]:
            results[index] = activation_store.limit_reached(activations[activation_id])
            del nodes[index]
    if not nodes:
        return results
    session.execute(insert(Node), [row for row, _ in nodes.values()])
    node_tags = [
        {"node_id": row["id"], "key": key, "value": value}
        for row, tags in nodes.values()
        for key, value in tags.items()
    ]
    if node_tags:
        session.execute(insert(NodeTag), node_tags)
    for row, tags in nodes.values():
        events.emit(
            session,
            events.NODE_REGISTRATION,
            [access.frn("node", row["id"])],
            {
                "node-id": row["id"],
                "node-name": row["name"],
                "activation-id": row["activation_id"],
                "tags": tags,
                "platform": row["platform"],
                "agent-version": row["agent_version"],
            },
        )
    return results


def _node_row(
    activation: Activation, request: RegisterRequest
) -> tuple[dict[str, Any], dict[str, str]]:
    """A new node's columns and its tags, or why the request's fields cannot make one."""
    tags = {**activation.tags, **check_tags(dict(request.tags))}
    facts = request.facts
    return {
        "id": new_node_id(),
        "name": check_label(
            request.name or activation.name or facts.get("hostname") or "node", "The node name"
        ),
        "hostname": facts.get("hostname"),
        "platform": facts.get("platform"),
        "platform_version": facts.get("platform_version"),
        "architecture": facts.get("architecture"),
        "agent_version": request.agent_version,
        "public_key": _check_public_key(request.public_key),
        "seal_public_key": _check_seal_key(request.seal_public_key),
        "activation_id": activation.id,
        "ping_status": PingStatus.CONNECTION_LOST,
        "registered_at": utcnow(),
        "facts": dict(facts),
        "local_config": {},
    }, tags


def _ping_event(session: Session, node_id: str, name: str | None, status: str) -> None:
    events.emit(
        session,
        events.NODE_STATUS,
        [access.frn("node", node_id)],
        {"node-id": node_id, "node-name": name, "ping-status": status},
    )


def read_node(session: Session, node_id: str, *, include_deleted: bool = False) -> Node:
    node = session.get(Node, node_id) if is_node_id(node_id) else None
    if node is None or (node.deleted_at is not None and not include_deleted):
        raise NotFoundError(f"No node {node_id} exists; list nodes with `fleetrun nodes list`.")
    return node


def read_nodes(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    ping_status: str | None = None,
    tags: dict[str, str] | None = None,
) -> list[Node]:
    return list(
        session.execute(select_nodes(ids=ids, ping_status=ping_status, tags=tags)).scalars()
    )


def select_nodes(
    *,
    ids: Sequence[str] | None = None,
    ping_status: str | None = None,
    tags: dict[str, str] | None = None,
) -> Select[Node]:
    """Registered nodes, by name then id: those listed, of a ping status, with all of
    these tags (each filter only when given)."""
    query = select(Node).where(Node.deleted_at.is_(None)).order_by(Node.name, Node.id)
    if ids is not None:
        query = query.where(Node.id.in_(ids))
    if ping_status:
        query = query.where(Node.ping_status == ping_status)
    for key, value in (tags or {}).items():
        query = query.where(
            Node.id.in_(select(NodeTag.node_id).where(NodeTag.key == key, NodeTag.value == value))
        )
    return query


def read_nodes_after(
    session: Session, after: str | None, limit: int, *, ids: Sequence[str] | None = None
) -> list[Node]:
    """Up to `limit` registered nodes in id order, after the id `after` (a page)."""
    query = select(Node).where(Node.deleted_at.is_(None)).order_by(Node.id).limit(limit)
    if after is not None:
        query = query.where(Node.id > after)
    if ids is not None:
        query = query.where(Node.id.in_(ids))
    return list(session.execute(query).scalars())


def write_tags(session: Session, node_id: str, tags: dict[str, str]) -> None:
    """Replace a node's tags."""
    session.execute(delete(NodeTag).where(NodeTag.node_id == node_id))
    session.add_all(NodeTag(node_id=node_id, key=k, value=v) for k, v in tags.items())
    session.flush()


def read_tags(session: Session, node_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    ids = list(node_ids)
    tags: dict[str, dict[str, str]] = {node_id: {} for node_id in ids}
    for chunk in _chunks(ids, 500):
        rows = session.execute(
            select(NodeTag.node_id, NodeTag.key, NodeTag.value).where(NodeTag.node_id.in_(chunk))
        )
        for node_id, key, value in rows:
            tags[node_id][key] = value
    return tags


def read_nodes_by_ids(session: Session, ids: Sequence[str]) -> list[Node]:
    """These nodes, or NotFoundError naming the first that does not exist."""
    nodes = read_nodes(session, ids=list(ids))
    known = {n.id for n in nodes}
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFoundError(f"No node {missing[0]} exists; list nodes with `fleetrun nodes list`.")
    return nodes


def candidates(session: Session, targets: list[Target], *, strict: bool = True) -> list[Candidate]:
    """The nodes that targeting may select: just the listed ones when ids are given.
    With `strict`, a listed id that does not exist is an error."""
    ids = next((t.values for t in targets if t.key == "NodeIds"), None)
    if ids is not None and strict:
        nodes = read_nodes_by_ids(session, ids)
    else:
        nodes = read_nodes(session, ids=ids)
    tags = read_tags(session, (n.id for n in nodes))
    return [Candidate(id=n.id, tags=tags[n.id]) for n in nodes]


def delete_node(session: Session, node_id: str) -> Node:
    """Deregister a node: it can no longer connect; its history stays."""
    node = read_node(session, node_id)
    node.deleted_at = utcnow()
    node.ping_status = PingStatus.INACTIVE
    node.session_id = None
    events.emit(
        session,
        events.NODE_DEREGISTRATION,
        [access.frn("node", node.id)],
        {"node-id": node.id, "node-name": node.name},
    )
    return node


def identities_of(session: Session, node_ids: Sequence[str]) -> dict[str, Any]:
    """What a handshake checks of each node (id, public_key, deleted_at) as plain
    rows, by node id (the unknown ones missing): no ORM objects."""
    found: dict[str, Any] = {}
    for start in range(0, len(node_ids), 500):
        query = select(Node.id, Node.public_key, Node.deleted_at).where(
            Node.id.in_(list(node_ids[start : start + 500]))
        )
        found.update((row.id, row) for row in session.execute(query))
    return found


@dataclass(frozen=True)
class Online:
    """A node whose agent just opened a session, with what its hello said."""

    node_id: str
    session_id: str
    agent_version: str
    facts: dict[str, str]
    local_config: dict[str, Any]


def set_many_online(
    session: Session, nodes: Sequence[Online], *, replica_id: str | None = None
) -> None:
    """These nodes' agents opened sessions (through `replica_id`): each node Online, with
    what its hello said, and its status event. Their names are read in one statement
    per chunk, their rows updated with one executemany per shape (with or without
    facts)."""
    names: dict[str, str] = {}
    ids = [n.node_id for n in nodes]
    for start in range(0, len(ids), 500):
        query = select(Node.id, Node.name).where(Node.id.in_(ids[start : start + 500]))
        names.update((node_id, name) for node_id, name in session.execute(query))
    now = utcnow()
    shapes: dict[bool, list[dict[str, Any]]] = {}
    for n in nodes:
        row: dict[str, Any] = {
            "b_id": n.node_id,
            "ping_status": PingStatus.ONLINE.value,
            "last_ping_at": now,
            "session_id": n.session_id,
            "replica_id": replica_id,
            "agent_version": n.agent_version,
            "local_config": n.local_config,
        }
        if n.facts:
            row.update(
                facts=n.facts,
                hostname=n.facts.get("hostname"),
                platform=n.facts.get("platform"),
                platform_version=n.facts.get("platform_version"),
                architecture=n.facts.get("architecture"),
            )
        shapes.setdefault(bool(n.facts), []).append(row)
    table = cast(Table, Node.__table__)
    for rows in shapes.values():
        columns: dict[str, Any] = {key: bindparam(key) for key in rows[0] if key != "b_id"}
        # Core, not the ORM's bulk update: one statement for every row of the shape.
        session.connection().execute(
            update(table).where(table.c.id == bindparam("b_id")).values(columns), rows
        )
    for n in nodes:
        _ping_event(session, n.node_id, names.get(n.node_id), PingStatus.ONLINE)


def set_public_key(session: Session, node_id: str, public_key: str) -> None:
    """A rotated identity key: from now on only it opens a session."""
    session.execute(
        update(Node).where(Node.id == node_id).values(public_key=_check_public_key(public_key))
    )


def set_local_config(session: Session, node_id: str, config: dict[str, Any]) -> None:
    """What the node says its local configuration is (shown read-only)."""
    session.execute(update(Node).where(Node.id == node_id).values(local_config=config))


def set_connections_lost(session: Session, sessions: Mapping[str, str]) -> list[str]:
    """Mark nodes lost whose session (node id -> session id) ended, in one statement
    per chunk; a node whose newer session took over meanwhile is left alone. The ids
    marked."""
    marked: list[str] = []
    pairs = list(sessions.items())
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        result = session.execute(
            update(Node)
            .where(tuple_(Node.id, Node.session_id).in_(chunk))
            .values(ping_status=PingStatus.CONNECTION_LOST, session_id=None)
            .returning(Node.id, Node.name)
        )
        for node_id, name in result.all():
            _ping_event(session, node_id, name, PingStatus.CONNECTION_LOST)
            marked.append(node_id)
    return marked


def mark_pinged(session: Session, node_ids: Sequence[str], at: datetime) -> None:
    for chunk in _chunks(list(node_ids), 500):
        session.execute(update(Node).where(Node.id.in_(chunk)).values(last_ping_at=at))


def set_lost_where_unheld(session: Session, live_replicas: Select[str]) -> list[str]:
    """Mark lost every online node whose session no live replica holds (its replica's
    lease ran out, or none is named); the ids marked. One conditioned statement, so
    replicas sweeping at once mark (and announce) each node once."""
    result = session.execute(
        update(Node)
        .where(
            Node.ping_status == PingStatus.ONLINE,
            or_(Node.replica_id.is_(None), Node.replica_id.not_in(live_replicas)),
        )
        .values(ping_status=PingStatus.CONNECTION_LOST, session_id=None, replica_id=None)
        .returning(Node.id, Node.name)
    )
    marked = []
    for node_id, name in sorted(result.all()):
        _ping_event(session, node_id, name, PingStatus.CONNECTION_LOST)
        marked.append(node_id)
    return marked


def deleted_but_held(session: Session, replica_id: str) -> list[str]:
    """Nodes deleted (through any replica) whose session this replica held: their ids,
    once (the replica's name comes off them), for the replica to close those sessions."""
    result = session.execute(
        update(Node)
        .where(Node.replica_id == replica_id, Node.deleted_at.is_not(None))
        .values(replica_id=None)
        .returning(Node.id)
    )
    return sorted(node_id for (node_id,) in result.all())


def reclaim(session: Session, sessions: Mapping[str, str], replica_id: str) -> list[str]:
    """After this replica's lease lapsed and another marked its nodes lost, mark online
    again those whose session (node id -> session id) it still holds, unless a newer
    session took the node meanwhile; the ids marked. Rare: one statement a node."""
    marked: list[str] = []
    for node_id, session_id in sorted(sessions.items()):
        name = session.execute(
            update(Node)
            .where(
                Node.id == node_id,
                Node.session_id.is_(None),
                Node.ping_status == PingStatus.CONNECTION_LOST,
                Node.deleted_at.is_(None),
            )
            .values(ping_status=PingStatus.ONLINE, session_id=session_id, replica_id=replica_id)
            .returning(Node.name)
        ).first()
        if name is not None:
            _ping_event(session, node_id, name[0], PingStatus.ONLINE)
            marked.append(node_id)
    return marked


def to_schema(node: Node, tags: dict[str, str]) -> schemas.Node:
    return schemas.Node(
        id=node.id,
        name=node.name,
        ping_status=node.ping_status,
        last_ping_at=node.last_ping_at,
        registered_at=node.registered_at,
        agent_version=node.agent_version,
        hostname=node.hostname,
        platform=node.platform,
        platform_version=node.platform_version,
        architecture=node.architecture,
        activation_id=node.activation_id,
        seal_public_key=node.seal_public_key,
        tags=tags,
        facts={k: str(v) for k, v in (node.facts or {}).items()},
        local_config=node.local_config or {},
    )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
