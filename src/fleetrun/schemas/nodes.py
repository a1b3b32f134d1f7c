from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fleetrun.schemas.base import Request, Response


class Node(Response):
    id: str
    name: str
    ping_status: str
    last_ping_at: datetime | None = None
    registered_at: datetime
    agent_version: str | None = None
    hostname: str | None = None
    platform: str | None = None  # Linux, Darwin, Windows
    platform_version: str | None = None
    architecture: str | None = None
    activation_id: str | None = None
    seal_public_key: str | None = None  # seal secrets for this node to it (fleetrun.core.sealing)
    tags: dict[str, str] = Field(default_factory=dict)
    facts: dict[str, str] = Field(default_factory=dict)
    local_config: dict[str, Any] = Field(default_factory=dict)


class NodeTagsUpdate(Request):
    """Tags to set (added, or changed) and tag keys to remove; the others stay."""

    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
