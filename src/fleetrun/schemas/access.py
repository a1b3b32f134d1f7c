"""Shapes of access control: principals, tokens, policies, roles, simulation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from fleetrun.schemas.base import Request, Response

MAX_TOKEN_EXPIRES_S = 10 * 365 * 24 * 3600


class PrincipalCreate(Request):
    name: str = Field(max_length=64)
    kind: Literal["user", "service"] = "user"
    description: str | None = Field(None, max_length=256)


class Attached(Response):
    kind: str  # policy or role
    name: str


class Principal(Response):
    name: str
    kind: str
    description: str | None = None
    builtin: bool = False
    created_at: datetime
    attached: list[Attached] = Field(default_factory=list)


class TokenCreate(Request):
    principal: str | None = Field(None, description="whose token (default: the caller's own)")
    description: str | None = Field(None, max_length=256)
    expires_in_s: float | None = Field(None, gt=0, le=MAX_TOKEN_EXPIRES_S)
    aws: bool = Field(
        False,
        description="an AWS-style access key (id and secret, for SigV4 clients of the "
        "SSM-compatible API) instead of a bearer token",
    )


class Token(Response):
    id: str
    principal: str
    description: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    access_key_id: str | None = None  # an AWS-style access key's id
    active: bool = True


class TokenCreated(Token):
    token: str | None = None  # shown once, stored only as a hash (None: an access key)
    secret_access_key: str | None = None  # an access key's secret, shown once


class PolicyCreate(Request):
    name: str = Field(max_length=128)
    document: str | dict[str, Any] = Field(
        description="the policy as JSON text (errors then name line and column) or an object"
    )
    description: str | None = Field(None, max_length=256)


class PolicyPut(Request):
    document: str | dict[str, Any]
    description: str | None = Field(None, max_length=256)


class Policy(Response):
    name: str
    description: str | None = None
    document: dict[str, Any]
    builtin: bool = False
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RoleCreate(Request):
    name: str = Field(max_length=128)
    policies: list[str] = Field(min_length=1, max_length=20)
    description: str | None = Field(None, max_length=256)


class RolePut(Request):
    policies: list[str] = Field(min_length=1, max_length=20)
    description: str | None = Field(None, max_length=256)


class Role(Response):
    name: str
    description: str | None = None
    policies: list[str]
    builtin: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SimulateRequest(Request):
    action: str
    resource: str = "*"
    context: dict[str, str | list[str]] = Field(default_factory=dict)


class MatchedStatement(Response):
    policy: str
    index: int
    sid: str | None = None
    effect: str


class SimulateResult(Response):
    decision: Literal["allow", "deny"]
    matched_statements: list[MatchedStatement] = Field(default_factory=list)
    reason: str = ""
    node_tags: dict[str, str] | None = Field(
        None,
        description="the tags of the node the resource names, decided as "
        "fleetrun:ResourceTag/KEY (a key given in the context wins)",
    )
    warnings: list[str] = Field(
        default_factory=list, description="what the decision could not take into account"
    )


class Identity(Response):
    principal: str
    kind: str
    token_id: str | None = None
    attached: list[Attached] = Field(default_factory=list)
