"""Shapes of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fleetrun.schemas.base import Response


class AuditRecord(Response):
    seq: int
    at: datetime
    kind: str  # request, decision, agent
    principal: str | None = None
    action: str | None = None
    resource: str | None = None
    decision: str | None = None  # allow, deny
    source_ip: str | None = None
    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str


class AuditVerdict(Response):
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str | None = None  # altered, missing
    message: str


class AuditKey(Response):
    algorithm: str = "Ed25519"
    public_key: str  # base64 raw key: verifies the signed head at the end of an export
