"""Targets: which nodes a command runs on.

A command names its targets as a list of `Target(key, values)`; the entries are ANDed
and the values of one entry are ORed, as in SSM's SendCommand:

    NodeIds     values are node ids
    tag:KEY     the node's tag KEY equals one of the values
    tag-key     the node has one of the tag keys in values
    group       the members of the node group named in values (expanded by the store)
    all         every node (values: ["*"])

`select` is the whole decision, over plain data; the store only loads candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from fleetrun.core.errors import ValidationError
from fleetrun.core.ids import is_node_id
from fleetrun.core.tags import check_tag

MAX_TARGETS = 5
MAX_VALUES = 1000  # fleetrun has no 50-id cap: a command may name a thousand nodes


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="NodeIds, tag:KEY, tag-key, group or all")
    values: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What targeting needs to know of a node."""

    id: str
    tags: Mapping[str, str]


def check(targets: list[Target]) -> list[Target]:
    """Refuse target lists that cannot mean anything, with a sentence that says why."""
    if not targets:
        raise ValidationError(
            "A command needs targets: name nodes with --node, tags with --tag or --target, "
            "or use --all."
        )
    if len(targets) > MAX_TARGETS + 1:  # NodeIds plus five filters
        raise ValidationError(f"At most {MAX_TARGETS} target filters can be combined.")
    for target in targets:
        _check_one(target)
    return targets


def _check_one(target: Target) -> None:
    key, values = target.key, target.values
    if len(values) > MAX_VALUES:
        raise ValidationError(f"Target {key} has {len(values)} values; at most {MAX_VALUES}.")
    if key == "NodeIds":
        if not values:
            raise ValidationError("Target NodeIds needs at least one node id.")
        for value in values:
            if not is_node_id(value):
                raise ValidationError(
                    f"{value!r} is not a node id: node ids look like n-0123456789abcdef0."
                )
    elif key.startswith("tag:"):
        if not values:
            raise ValidationError(f"Target {key} needs at least one value, e.g. {key}=prod.")
        for value in values:
            check_tag(key[4:], value)
    elif key == "tag-key":
        if not values:
            raise ValidationError("Target tag-key needs at least one tag key.")
        for value in values:
            check_tag(value, "")
    elif key == "group":
        if len(values) != 1:
            raise ValidationError("Target group takes exactly one group name.")
    elif key == "all":
        if values not in ([], ["*"]):
            raise ValidationError("Target all takes no values.")
    else:
        raise ValidationError(
            f"Unknown target key {key!r}: use NodeIds, tag:KEY, tag-key, group or all."
        )


def parse_target(text: str) -> Target:
    """The command-line form: `tag:KEY=V1,V2`, `tag-key:K1,K2`, `group:NAME`, `all`,
    or `NodeIds=n-...,n-...`."""
    text = text.strip()
    if text == "all":
        return Target(key="all", values=["*"])
    if text.startswith("tag:"):
        key, sep, values = text[4:].partition("=")
        if not sep or not key:
            raise ValidationError(
                f"Target {text!r} is malformed: write tag:KEY=VALUE[,VALUE...], e.g. tag:env=prod."
            )
        return _checked(Target(key=f"tag:{key}", values=_split(values)))
    for prefix, key in (("tag-key:", "tag-key"), ("group:", "group"), ("NodeIds=", "NodeIds")):
        if text.startswith(prefix):
            return _checked(Target(key=key, values=_split(text[len(prefix) :])))
    raise ValidationError(
        f"Target {text!r} is malformed: use tag:KEY=V1,V2, tag-key:KEY, group:NAME or all."
    )


def _split(values: str) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()]


def _checked(target: Target) -> Target:
    _check_one(target)
    return target


def matches(target: Target, node: Candidate) -> bool:
    key, values = target.key, target.values
    if key == "NodeIds":
        return node.id in values
    if key.startswith("tag:"):
        return node.tags.get(key[4:]) in values
    if key == "tag-key":
        return any(k in node.tags for k in values)
    if key == "all":
        return True
    raise ValueError(f"target {key} must be expanded before selection")


def select(targets: list[Target], nodes: Iterable[Candidate]) -> list[str]:
    """Ids of the nodes every target matches, in the order given."""
    return [node.id for node in nodes if all(matches(t, node) for t in targets)]
