from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetrun.schemas.base import Request, Response

DEFAULT_EXPIRES_S = 24 * 3600
MAX_EXPIRES_S = 30 * 24 * 3600


class ActivationCreate(Request):
    name: str | None = Field(None, max_length=256, description="default name of the nodes")
    description: str | None = Field(None, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict)
    registration_limit: int = Field(1, ge=1, le=1000)
    expires_in_s: float = Field(DEFAULT_EXPIRES_S, gt=0, le=MAX_EXPIRES_S)


class Activation(Response):
    id: str
    name: str | None = None
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    registration_limit: int
    registrations_count: int
    expires_at: datetime
    created_at: datetime
    expired: bool


class ActivationCreated(Activation):
    code: str  # shown once, stored only as a hash
