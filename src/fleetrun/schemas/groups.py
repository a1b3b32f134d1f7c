from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetrun.schemas.base import Request, Response


class GroupCreate(Request):
    name: str = Field(description="1-128 letters, digits, _ - or .")
    description: str | None = Field(None, max_length=256)
    node_ids: list[str] | None = Field(None, description="a fixed list of nodes")
    tags: dict[str, list[str]] | None = Field(
        None, description="every node matching these tags (values ORed, keys ANDed), now and later"
    )


class GroupUpdate(Request):
    """New members for an existing group: a list of nodes or tag filters (exactly one);
    the description changes when given."""

    description: str | None = Field(None, max_length=256)
    node_ids: list[str] | None = Field(None, description="a fixed list of nodes")
    tags: dict[str, list[str]] | None = Field(
        None, description="every node matching these tags (values ORed, keys ANDed), now and later"
    )


class Group(Response):
    name: str
    description: str | None = None
    node_ids: list[str] | None = None
    tags: dict[str, list[str]] | None = None
    members: list[str] = Field(default_factory=list)
    created_at: datetime
