"""What the SSM operations share: their errors, the call they are handed, and readers
of request members that refuse a bad value the way SSM does.

    SsmError(code, message, status)   an AWS error body {"__type": code, "message": ...}

`code` is one of SSM's modelled error names (InvalidInstanceId, InvalidDocument, ...)
where SSM has one, so boto3 raises `client.exceptions.<code>`; otherwise AWS's common
ones (ValidationException, AccessDeniedException, ThrottlingException). Every operation
module exports `OPERATIONS: dict[str, Operation]`, which the protocol dispatches on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from fleetrun.server.authz import Caller
from fleetrun.server.state import ServerState


class SsmError(Exception):
    """An answer in AWS's error shape: `code` goes into `__type`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation(message: str) -> SsmError:
    return SsmError("ValidationException", message)


@dataclass(frozen=True)
class Call:
    """One SSM operation being served: who asked, and the request's members."""

    request: Request
    state: ServerState
    caller: Caller
    operation: str
    body: Mapping[str, Any]


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    """An SSM operation: the fleetrun action decided before it runs (as the native
    route's `authorize` does; the handler decides per resource), and its handler.
    `action_for`, when set, picks that action from the request's members, for an
    operation that acts on more than one kind of resource (the tag operations)."""

    action: str
    handler: Handler
    action_for: Callable[[Mapping[str, Any]], str] | None = None

    def gate_action(self, body: Mapping[str, Any]) -> str:
        return self.action if self.action_for is None else self.action_for(body)


# -- request members -----------------------------------------------------------------


def _member(name: str) -> str:
    """AWS's validation messages name members in camelCase."""
    return name[:1].lower() + name[1:]


def string(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    max_length: int | None = None,
    min_length: int = 0,
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise validation(
                f"1 validation error detected: Value null at '{_member(name)}' failed to "
                "satisfy constraint: Member must not be null"
            )
        return None
    if not isinstance(value, str):
        raise validation(f"{name} must be a string.")
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        bound = f"at most {max_length}" if max_length is not None else f"at least {min_length}"
        raise validation(
            f"1 validation error detected: Value '{value[:64]}' at '{_member(name)}' failed "
            f"to satisfy constraint: Member must have length {bound}"
        )
    return value


def integer(
    body: Mapping[str, Any], name: str, *, low: int | None = None, high: int | None = None
) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation(f"{name} must be an integer.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise validation(
            f"1 validation error detected: Value '{value}' at '{_member(name)}' failed to "
            f"satisfy constraint: Member must have value between {low} and {high}"
        )
    return value


def boolean(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise validation(f"{name} must be true or false.")
    return value


def strings(body: Mapping[str, Any], name: str, *, max_items: int | None = None) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise validation(f"{name} must be a list of strings.")
    if max_items is not None and len(value) > max_items:
        raise validation(
            f"1 validation error detected: Value at '{_member(name)}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {max_items}"
        )
    return list(value)


def structure(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(f"{name} must be a structure (a JSON object).")
    return value


def structures(body: Mapping[str, Any], name: str, *, max_items: int) -> list[dict[str, Any]]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise validation(f"{name} must be a list of structures.")
    if len(value) > max_items:
        raise validation(
            f"1 validation error detected: Value at '{_member(name)}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {max_items}"
        )
    return list(value)


def string_lists(body: Mapping[str, Any], name: str) -> dict[str, list[str]]:
    """A `map<string, list<string>>` member (SendCommand's Parameters)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(i, str) for i in v)
        for k, v in value.items()
    ):
        raise SsmError(
            "InvalidParameters",
            f"{name} must map each parameter name to a list of strings, such as "
            '{"commands": ["uptime"]}.',
        )
    return {k: list(v) for k, v in value.items()}


def max_results(body: Mapping[str, Any], *, default: int, high: int = 50) -> int:
    found = integer(body, "MaxResults", low=1, high=high)
    return default if found is None else found
