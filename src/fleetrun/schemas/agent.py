from __future__ import annotations

from pydantic import Field

from fleetrun.schemas.base import Request, Response


class RegisterRequest(Request):
    activation_id: str
    activation_code: str
    public_key: str = Field(description="base64 raw Ed25519 public key: the node's identity")
    seal_public_key: str | None = Field(
        None, description="base64 raw X25519 public key: secrets are sealed to it"
    )
    name: str | None = Field(None, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict)
    facts: dict[str, str] = Field(default_factory=dict)
    agent_version: str


class RegisterResponse(Response):
    node_id: str
    name: str
