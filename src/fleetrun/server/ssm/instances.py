"""SSM's managed-node operations over fleetrun's nodes: DescribeInstanceInformation and
DeregisterManagedInstance.

    InstanceInformationFilterList  {key, valueSet}: InstanceIds, AgentVersion, PingStatus,
                                   PlatformTypes, ActivationIds, IamRole, ResourceType
    Filters                        {Key, Values}: the same keys, and tag:KEY, tag-key
                                   (tag filters are not combined with the others, as in SSM)
    MaxResults, NextToken          5-50 (default 10); fleetrun's cursor is the last node id

Each node is listed only when the caller may `fleetrun:ListNodes` it with its tags, as
the native listing decides; deregistering is the native `DELETE /v1/nodes/{id}`: its
open invocations end Undeliverable and its agent is disconnected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun import __version__
from fleetrun.core import access, ssm
from fleetrun.core.documents import platform_type
from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_node_id
from fleetrun.core.statuses import PingStatus
from fleetrun.server.db import Tx
from fleetrun.server.engine import invocations as engine_invocations
from fleetrun.server.ssm import filters
from fleetrun.server.ssm.base import Call, Operation, SsmError, max_results, string, structures
from fleetrun.server.store import nodes as store
from fleetrun.server.store.tables import Activation, Node

# Filter keys of InstanceInformationFilterList; `Filters` also takes tag:KEY and tag-key.
KEYS = (
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
    "AssociationStatus",
)
STRING_KEYS = (*KEYS, "SourceIds", "SourceTypes")
PING_STATUSES = tuple(s.value for s in PingStatus)
PLATFORM_TYPES = ("Linux", "MacOS", "Windows")
RESOURCE_TYPES = ("ManagedInstance", "EC2Instance")
SOURCE_TYPE = "AWS::SSM::ManagedInstance"
ASSOCIATION_STATUSES = ("Success", "Pending", "Failed")
CHUNK = 500  # nodes read at a time while a page is filled


@dataclass(frozen=True)
class Wanted:
    """The filters, each key's values ORed, the keys ANDed."""

    values: dict[str, list[str]] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)  # tag:KEY -> values
    tag_keys: list[str] = field(default_factory=list)


def read_filters(body: Mapping[str, Any]) -> Wanted:
    legacy = structures(body, "InstanceInformationFilterList", max_items=len(KEYS))
    given = structures(body, "Filters", max_items=len(STRING_KEYS) + 50)
    if legacy and given:
        raise SsmError(
            "InvalidFilterKey",
            "Give InstanceInformationFilterList or Filters, not both: Filters takes every "
            "key the other does, and tag filters.",
        )
    if legacy:
        pairs = [(_key(f, "key", KEYS), _values(f, "valueSet")) for f in legacy]
    else:
        pairs = [(_key(f, "Key", None), _values(f, "Values")) for f in given]
    wanted = Wanted()
    for key, values in pairs:
        if key.startswith("tag:"):
            wanted.tags.setdefault(key[4:], []).extend(values)
        elif key == "tag-key":
            wanted.tag_keys.extend(values)
        elif key in wanted.values:
            raise SsmError("InvalidFilterKey", f"Filter key {key} is given twice: give it once.")
        else:
            wanted.values[key] = _checked(key, values)
    if (wanted.tags or wanted.tag_keys) and wanted.values:
        raise SsmError(
            "InvalidFilterKey",
            "Tag filters (tag:KEY, tag-key) cannot be combined with other filter keys: "
            "list by tags, or by the others.",
        )
    return wanted


def _key(item: Mapping[str, Any], name: str, allowed: tuple[str, ...] | None) -> str:
    key = string(item, name, required=True, min_length=1, max_length=163) or ""
    tag = allowed is None and (key == "tag-key" or (key.startswith("tag:") and len(key) > 4))
    if not tag and key not in (allowed or STRING_KEYS):
        raise SsmError(
            "InvalidFilterKey",
            f"Filter key {key!r} is not valid: use {', '.join(allowed or STRING_KEYS)}"
            + ("" if allowed else ", tag:KEY or tag-key")
            + ".",
        )
    return key


def _values(item: Mapping[str, Any], name: str) -> list[str]:
    values = item.get(name)
    if (
        not isinstance(values, list)
        or not 1 <= len(values) <= 100
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise SsmError(
            "InvalidInstanceInformationFilterValue",
            f"{name} must list 1 to 100 values, none of them empty.",
        )
    return list(values)


def _checked(key: str, values: list[str]) -> list[str]:
    enums = {
        "PingStatus": PING_STATUSES,
        "PlatformTypes": PLATFORM_TYPES,
        "ResourceType": RESOURCE_TYPES,
        "AssociationStatus": ASSOCIATION_STATUSES,
    }
    allowed = enums.get(key)
    wrong = [v for v in values if allowed is not None and v not in allowed]
    if wrong:
        raise SsmError(
            "InvalidInstanceInformationFilterValue",
            f"{key} value {wrong[0]!r} is not valid: use {', '.join(allowed or ())}.",
        )
    if key == "InstanceIds":
        bad = [v for v in values if not is_node_id(v)]
        if bad:
            raise SsmError(
                "InvalidInstanceId",
                f"{bad[0]!r} is not a fleetrun node id: node ids look like n-0123456789abcdef0.",
            )
    return values


@dataclass(frozen=True)
class _Listed:
    node: Node
    tags: dict[str, str]
    iam_role: str | None


def _matches(row: _Listed, wanted: Wanted) -> bool:
    node = row.node
    facts: dict[str, Any] = {
        "InstanceIds": node.id,
        "AgentVersion": node.agent_version or "",
        "PingStatus": node.ping_status,
        "PlatformTypes": platform_type(node.platform or ""),
        "ActivationIds": node.activation_id or "",
        "IamRole": row.iam_role or "",
        "ResourceType": "ManagedInstance",
        "AssociationStatus": None,  # fleetrun has no State Manager associations
        "SourceIds": node.id,
        "SourceTypes": SOURCE_TYPE,
    }
    if any(facts[key] not in values for key, values in wanted.values.items()):
        return False
    if any(row.tags.get(key) not in values for key, values in wanted.tags.items()):
        return False
    return not wanted.tag_keys or any(key in row.tags for key in wanted.tag_keys)


def information(row: _Listed) -> dict[str, Any]:
    """SSM's `InstanceInformation` for a node."""
    node = row.node
    facts = node.facts or {}
    found: dict[str, Any] = {
        "InstanceId": node.id,
        "PingStatus": node.ping_status,
        "LastPingDateTime": ssm.epoch(node.last_ping_at),
        "AgentVersion": node.agent_version or "",
        "IsLatestVersion": node.agent_version == __version__,
        "PlatformType": platform_type(node.platform or "") if node.platform else "",
        "PlatformName": node.platform_version or node.platform or "",
        "PlatformVersion": str(facts.get("kernel") or ""),
        "ActivationId": node.activation_id or "",
        "IamRole": row.iam_role or "",
        "RegistrationDate": ssm.epoch(node.registered_at),
        "ResourceType": "ManagedInstance",
        "Name": node.name,
        "ComputerName": node.hostname or node.name,
        "SourceId": node.id,
        "SourceType": SOURCE_TYPE,
    }
    address = facts.get("ip_address")
    if address:
        found["IPAddress"] = str(address)
    if found["LastPingDateTime"] is None:
        del found["LastPingDateTime"]
    return found


async def describe_instance_information(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    wanted = read_filters(body)
    limit = max_results(body, default=10)
    if body.get("MaxResults") is not None and limit < 5:
        raise SsmError(
            "ValidationException",
            "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: "
            "Member must have value greater than or equal to 5",
        )
    after = filters.cursor(body, call.operation)
    ids = wanted.values.get("InstanceIds")

    def read(session: Session) -> tuple[list[_Listed], str | None]:
        if ids is not None:
            known = {n.id for n in store.read_nodes(session, ids=ids)}
            missing = [i for i in ids if i not in known]
            if missing:
                raise SsmError(
                    "InvalidInstanceId",
                    f"Instance {missing[0]} is not a registered node: see "
                    "DescribeInstanceInformation without filters.",
                )
        page: list[_Listed] = []
        last = after
        while True:  # a chunk at a time: filters and policies may leave many out
            nodes = store.read_nodes_after(session, last, CHUNK, ids=ids)
            tags = store.read_tags(session, (n.id for n in nodes))
            roles = _iam_roles(session, {n.activation_id for n in nodes if n.activation_id})
            for node in nodes:
                row = _Listed(node, tags[node.id], roles.get(node.activation_id or ""))
                if not _matches(row, wanted) or not caller.allows(
                    "ListNodes", access.frn("node", node.id), access.node_context(row.tags)
                ):
                    continue
                if len(page) == limit:
                    return page, page[-1].node.id
                page.append(row)
            if len(nodes) < CHUNK:
                return page, None
            last = nodes[-1].id

    rows, next_cursor = await call.state.db.read(read)
    return filters.page(
        "InstanceInformationList", [information(r) for r in rows], call.operation, next_cursor
    )


def _iam_roles(session: Session, activation_ids: set[str]) -> dict[str, str | None]:
    if not activation_ids:
        return {}
    rows = session.execute(
        select(Activation.id, Activation.iam_role).where(Activation.id.in_(activation_ids))
    )
    roles: dict[str, str | None] = {}
    for activation_id, role in rows:
        roles[activation_id] = role
    return roles


# -- deregistering --------------------------------------------------------------------


def node_id_of(instance_id: str) -> str:
    """The node an SSM managed-instance id names: fleetrun's own `n-` id, or the same
    17 hex digits after `mi-` (SSM's shape, which boto3 insists on for this member)."""
    if instance_id.startswith("mi-") and is_node_id("n-" + instance_id[3:]):
        return "n-" + instance_id[3:]
    if is_node_id(instance_id):
        return instance_id
    raise SsmError(
        "InvalidInstanceId",
        f"{instance_id!r} is not a managed node id: give the node's id (n-0123456789abcdef0) "
        "or the same digits after mi- (mi-0123456789abcdef0).",
    )


async def deregister_managed_instance(call: Call) -> dict[str, Any]:
    instance_id = string(call.body, "InstanceId", required=True) or ""
    node_id = node_id_of(instance_id)
    state, caller = call.state, call.caller

    def delete(tx: Tx) -> None:
        try:
            found = store.read_node(tx.session, node_id)
        except NotFoundError as exc:
            raise SsmError(
                "InvalidInstanceId", f"Instance {instance_id} is not a registered node."
            ) from exc
        tags = store.read_tags(tx.session, [found.id])[found.id]
        caller.require("DeleteNode", access.frn("node", found.id), access.node_context(tags))
        store.delete_node(tx.session, node_id)
        touched = engine_invocations.node_deleted(tx.session, node_id)
        state.refresh_commands(tx, touched)

    await state.db.write(delete)
    await state.gateway.node_deleted(node_id)
    return {}


OPERATIONS: dict[str, Operation] = {
    "DescribeInstanceInformation": Operation("ListNodes", describe_instance_information),
    "DeregisterManagedInstance": Operation("DeleteNode", deregister_managed_instance),
}
