"""Node groups: named sets of nodes, by list or by tag filters, and how a `group`
target expands."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.core.inputs import check_not_dots
from fleetrun.core.tags import check_tag
from fleetrun.core.targets import Target
from fleetrun.schemas import groups as schemas
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import NodeGroup, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,128}$")


def create_group(session: Session, body: schemas.GroupCreate) -> NodeGroup:
    if not NAME_RE.fullmatch(body.name):
        raise ValidationError(
            f"Group name {body.name!r} is not valid: use 1-128 letters, digits, _ - or ."
        )
    check_not_dots(body.name, "Group name")
    _check_members(session, body)
    if session.get(NodeGroup, body.name) is not None:
        raise ConflictError(f"Group {body.name} already exists.")
    group = NodeGroup(
        name=body.name,
        description=body.description,
        node_ids=list(dict.fromkeys(body.node_ids)) if body.node_ids is not None else None,
        tags=body.tags,
        created_at=utcnow(),
    )
    session.add(group)
    session.flush()
    return group


def _check_members(session: Session, body: schemas.GroupCreate | schemas.GroupUpdate) -> None:
    """A group is a list of existing nodes or tag filters, exactly one."""
    if (body.node_ids is None) == (body.tags is None):
        raise ValidationError(
            "A group is either a list of nodes (--node) or tag filters (--tag), exactly one."
        )
    if body.node_ids is not None:
        if not body.node_ids:
            raise ValidationError("A group of nodes needs at least one node id.")
        node_store.read_nodes_by_ids(session, body.node_ids)  # every id must exist
    if body.tags is not None:
        if not body.tags:
            raise ValidationError("A tag group needs at least one tag filter.")
        for key, values in body.tags.items():
            if not values:
                raise ValidationError(f"Tag filter {key!r} needs at least one value.")
            for value in values:
                check_tag(key, value)


def update_group(session: Session, name: str, body: schemas.GroupUpdate) -> NodeGroup:
    """Replace a group's members (its list, or its tag filters) and description; its
    name and its run commands stay."""
    group = read_group(session, name)
    _check_members(session, body)
    group.node_ids = list(dict.fromkeys(body.node_ids)) if body.node_ids is not None else None
    group.tags = body.tags
    if body.description is not None:
        group.description = body.description
    session.flush()
    return group


def read_group(session: Session, name: str) -> NodeGroup:
    group = session.get(NodeGroup, name)
    if group is None:
        raise NotFoundError(f"No group {name!r} exists; see `fleetrun groups list`.")
    return group


def read_groups(session: Session) -> list[NodeGroup]:
    return list(session.execute(select(NodeGroup).order_by(NodeGroup.name)).scalars())


def delete_group(session: Session, name: str) -> None:
    session.delete(read_group(session, name))


def targets_of(group: NodeGroup) -> list[Target]:
    """The targets a group stands for: follows its tags, or its fixed list."""
    if group.node_ids is not None:
        return [Target(key="NodeIds", values=list(group.node_ids))]
    return [Target(key=f"tag:{k}", values=list(v)) for k, v in (group.tags or {}).items()]


def expand(session: Session, targets: list[Target]) -> list[Target]:
    out: list[Target] = []
    for target in targets:
        if target.key == "group":
            out.extend(targets_of(read_group(session, target.values[0])))
        else:
            out.append(target)
    return out


def members(session: Session, group: NodeGroup) -> list[str]:
    from fleetrun.core.targets import select as select_nodes

    targets = targets_of(group)
    return select_nodes(targets, node_store.candidates(session, targets, strict=False))


def to_schema(session: Session, group: NodeGroup) -> schemas.Group:
    return schemas.Group(
        name=group.name,
        description=group.description,
        node_ids=group.node_ids,
        tags=group.tags,
        members=members(session, group),
        created_at=group.created_at,
    )
