"""SSM's `Tag` lists ({Key, Value}) read into fleetrun's tags, checked as fleetrun checks
a node's tags (SSM's alphabet: letters, digits, spaces and _ . : / = + - @)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import check_tag
from fleetrun.server.ssm.base import string, validation


def read_tags(items: list[dict[str, Any]]) -> dict[str, str]:
    """{Key: Value} of a Tags member, or ValidationException naming the first bad tag;
    a key given twice is refused."""
    tags: dict[str, str] = {}
    for item in items:
        key = string(item, "Key", required=True, min_length=1, max_length=128) or ""
        value = string(item, "Value", required=True, max_length=256) or ""
        try:
            check_tag(key, value)
        except ValidationError as exc:
            raise validation(exc.message) from exc
        if key in tags:
            raise validation(f"Tag key {key!r} is given twice: give each key once.")
        tags[key] = value
    return tags


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """SSM's TagList: {Key, Value} in key order."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
