"""Identifiers: their shapes, how they are made, how they are checked."""

from __future__ import annotations

import re
import secrets
import string
import uuid

NODE_ID_RE = re.compile(r"^n-[0-9a-f]{17}$")
COMMAND_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_node_id() -> str:
    """`n-` followed by 17 hex digits, like SSM's `mi-` ids."""
    return "n-" + secrets.token_hex(9)[:17]


def new_run_id() -> str:
    """`rc-` followed by 17 hex digits: one execution of a run command."""
    return "rc-" + secrets.token_hex(9)[:17]


def new_uuid() -> str:
    """A lowercase hyphenated UUID: command, invocation and activation ids."""
    return str(uuid.uuid4())


_ALPHANUMERIC = string.ascii_letters + string.digits


def new_secret(length: int = 24) -> str:
    """A random letters-and-digits secret (activation codes): safe to paste after a
    command-line flag, where a leading `-` would be read as an option."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def is_node_id(value: str) -> bool:
    return NODE_ID_RE.fullmatch(value) is not None


def is_uuid(value: str) -> bool:
    return COMMAND_ID_RE.fullmatch(value) is not None
