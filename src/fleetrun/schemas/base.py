from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from fleetrun.core.errors import ValidationError


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ServerVersion(Response):
    """GET /version: the server's release and the agent protocols it takes."""

    version: str
    protocol: int  # the protocol the server speaks
    min_protocol: int  # an agent older than this is refused at its hello


T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)


def describe(errors: Sequence[Any]) -> str:
    """One sentence for the first of pydantic's errors: which field, what is wrong."""
    first = dict(errors[0]) if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    kind = first.get("type")
    if kind == "json_invalid":
        return "The request body is not valid JSON: send a JSON object."
    message = str(first.get("msg", "is not valid")).rstrip(".")
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not a known field"
    elif message:
        message = message[0].lower() + message[1:]
    subject = f"Field {where!r}" if where else "The request"
    return f"{subject} {message}: fix it and retry."


def build(model: type[R], **fields: Any) -> R:
    """A request model, or our ValidationError with the sentence the server would give."""
    try:
        return model(**fields)
    except PydanticValidationError as exc:
        raise ValidationError(describe(exc.errors())) from None


class Page(Response, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorBody(Response):
    type: str  # NotFound, ValidationError, AccessDenied, ...
    message: str  # one sentence: what was wrong and what to do


class ErrorResponse(Response):
    """The body of every 4xx and 5xx answer."""

    error: ErrorBody


Timestamp = datetime
