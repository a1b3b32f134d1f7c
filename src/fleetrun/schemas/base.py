from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


T = TypeVar("T")


class Page(Response, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorBody(Response):
    type: str
    message: str


class ErrorResponse(Response):
    error: ErrorBody


Timestamp = datetime
