"""SSM's tag operations on the two resources fleetrun keeps tags for: AddTagsToResource,
RemoveTagsFromResource and ListTagsForResource.

    ManagedInstance   a node (its id, or the same digits after mi-): the node's tags,
                      which targets and policies read; changed as the native
                      `PATCH /v1/nodes/{id}/tags` does, decided as fleetrun:TagNode on
                      the node with its tags before and after the change (reading them:
                      fleetrun:GetNode)
    Document          a document of yours (not a built-in): decided as
                      fleetrun:TagDocument on the document (reading: fleetrun:GetDocument)

The gate decides the same fleetrun action, picked by ResourceType (ssm:AddTagsToResource
on a ManagedInstance is fleetrun:TagNode, on a Document fleetrun:TagDocument: the names
`fleetrun.core.ssmnames` gives them), then each resource is decided as above. Adding
a key a resource has overwrites its value; removing a key it lacks is not an error, as
in SSM. Other resource types answer InvalidResourceType.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fleetrun.core import access, ssmnames
from fleetrun.core import documents as core_documents
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.tags import MAX_TAGS, check_tags
from fleetrun.server.db import Tx
from fleetrun.server.ssm.base import Call, Operation, SsmError, string, strings, structures
from fleetrun.server.ssm.instances import node_id_of
from fleetrun.server.ssm.tagging import read_tags, tag_list
from fleetrun.server.store import documents as document_store
from fleetrun.server.store import nodes as node_store

MANAGED_INSTANCE = "ManagedInstance"
DOCUMENT = "Document"


def _resource(body: Mapping[str, Any]) -> tuple[str, str]:
    """(ResourceType, the fleetrun id or name it names)."""
    kind = string(body, "ResourceType", required=True) or ""
    resource_id = string(body, "ResourceId", required=True) or ""
    if kind not in (MANAGED_INSTANCE, DOCUMENT):
        raise SsmError(
            "InvalidResourceType",
            f"ResourceType {kind!r} is not one fleetrun keeps tags for: use ManagedInstance "
            "(a node) or Document.",
        )
    if kind == MANAGED_INSTANCE:
        try:
            return kind, node_id_of(resource_id)
        except SsmError as exc:
            raise SsmError("InvalidResourceId", exc.message) from exc
    name = ssmnames.fleetrun_document(resource_id)
    if name in core_documents.BUILTIN_DOCUMENTS:
        raise SsmError(
            "InvalidResourceId",
            f"{resource_id} is a built-in document: built-ins carry no tags.",
        )
    return kind, name


def _tags_of(session: Session, kind: str, resource_id: str) -> dict[str, str]:
    try:
        if kind == MANAGED_INSTANCE:
            node = node_store.read_node(session, resource_id)
            return node_store.read_tags(session, [node.id])[node.id]
        return document_store.read_document_tags(session, resource_id)
    except NotFoundError as exc:
        raise SsmError(
            "InvalidResourceId",
            f"No {'node' if kind == MANAGED_INSTANCE else 'document'} {resource_id} exists.",
        ) from exc


def _decide(call: Call, kind: str, resource_id: str, tags: Mapping[str, str]) -> None:
    if kind == MANAGED_INSTANCE:
        call.caller.require("TagNode", access.frn("node", resource_id), access.node_context(tags))
    else:
        call.caller.require("TagDocument", access.frn("document", resource_id))


async def _change(
    call: Call, kind: str, resource_id: str, add: dict[str, str], remove: list[str]
) -> None:
    def change(tx: Tx) -> None:
        before = _tags_of(tx.session, kind, resource_id)
        after = {k: v for k, v in before.items() if k not in remove}
        after.update(add)
        try:
            check_tags(after)
        except ValidationError as exc:
            raise SsmError(
                "TooManyTagsError",
                f"{exc.message} Remove tags first (RemoveTagsFromResource).",
            ) from exc
        for tags in (before, after):
            _decide(call, kind, resource_id, tags)
        if kind == MANAGED_INSTANCE:
            node_store.write_tags(tx.session, resource_id, after)
        else:
            document_store.write_document_tags(tx.session, resource_id, after)

    await call.state.db.write(change)


async def add_tags_to_resource(call: Call) -> dict[str, Any]:
    kind, resource_id = _resource(call.body)
    if call.body.get("Tags") is None:
        string(call.body, "Tags", required=True)  # AWS's "must not be null"
    add = read_tags(structures(call.body, "Tags", max_items=1000))
    if len(add) > MAX_TAGS:
        raise SsmError(
            "TooManyTagsError",
            f"A resource carries at most {MAX_TAGS} tags; {len(add)} were given.",
        )
    await _change(call, kind, resource_id, add, [])
    return {}


async def remove_tags_from_resource(call: Call) -> dict[str, Any]:
    kind, resource_id = _resource(call.body)
    if call.body.get("TagKeys") is None:
        string(call.body, "TagKeys", required=True)
    keys = strings(call.body, "TagKeys", max_items=1000)
    await _change(call, kind, resource_id, {}, keys)
    return {}


async def list_tags_for_resource(call: Call) -> dict[str, Any]:
    kind, resource_id = _resource(call.body)

    def read(session: Session) -> dict[str, str]:
        tags = _tags_of(session, kind, resource_id)
        if kind == MANAGED_INSTANCE:
            call.caller.require(
                "GetNode", access.frn("node", resource_id), access.node_context(tags)
            )
        else:
            call.caller.require("GetDocument", access.frn("document", resource_id))
        return tags

    return {"TagList": tag_list(await call.state.db.read(read))}


def _changing(body: Mapping[str, Any]) -> str:
    return "TagDocument" if body.get("ResourceType") == DOCUMENT else "TagNode"


def _reading(body: Mapping[str, Any]) -> str:
    return "GetDocument" if body.get("ResourceType") == DOCUMENT else "GetNode"


OPERATIONS: dict[str, Operation] = {
    "AddTagsToResource": Operation("TagNode", add_tags_to_resource, _changing),
    "RemoveTagsFromResource": Operation("TagNode", remove_tags_from_resource, _changing),
    "ListTagsForResource": Operation("GetNode", list_tags_for_resource, _reading),
}
