from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from fleetrun.schemas.base import Request, Response


class DocumentCreate(Request):
    name: str = Field(description="3-128 letters, digits, _ - or .")
    content: str = Field(description="the document, as YAML or JSON text")


class DocumentUpdate(Request):
    content: str = Field(description="the new version, as YAML or JSON text")


class DefaultVersion(Request):
    version: str = Field(description="a version number")


class DocumentSignature(Request):
    version: str = Field(description="the version signed (a number)")
    publisher: str = Field(max_length=128, description="who signed it")
    public_key: str = Field(description="base64 raw Ed25519 public key")
    signature: str = Field(description="base64 signature (fleetrun.core.signing)")


class SignatureInfo(Response):
    publisher: str
    public_key: str


class DocumentParameter(Response):
    name: str
    type: str
    description: str | None = None
    default: Any = None
    required: bool = False
    allowed_values: list[str] | None = None


class DocumentSummary(Response):
    name: str
    description: str | None = None
    builtin: bool = False
    default_version: str
    latest_version: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Document(Response):
    name: str
    version: str
    default_version: str
    latest_version: str
    builtin: bool = False
    format: str
    hash: str
    description: str | None = None
    parameters: list[DocumentParameter] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    content: dict[str, Any]
    signatures: list[SignatureInfo] = Field(default_factory=list)
    created_at: datetime | None = None
    created_by: str | None = None
