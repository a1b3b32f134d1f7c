"""Tags: `key=value` labels on nodes, and how they are written on a command line."""

from __future__ import annotations

import re

from fleetrun.core.errors import ValidationError

# Letters, digits, spaces and _ . : / = + - @ (SSM's tag alphabet); `=` only in values.
_KEY_RE = re.compile(r"^[\w .:/+\-@]{1,128}$")
_VALUE_RE = re.compile(r"^[\w .:/=+\-@]{0,256}$")
MAX_TAGS = 50


def check_tag(key: str, value: str) -> None:
    if not _KEY_RE.fullmatch(key):
        raise ValidationError(
            f"Tag key {key!r} is not valid: use 1-128 letters, digits, spaces or _ . : / + - @."
        )
    if not _VALUE_RE.fullmatch(value):
        raise ValidationError(
            f"Tag value {value!r} of key {key!r} is not valid: use at most 256 letters, "
            "digits, spaces or _ . : / = + - @."
        )


def parse_tag(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (key, value); the first `=` splits."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValidationError(f"Tag {text!r} is malformed: write it as KEY=VALUE, e.g. env=prod.")
    key, value = key.strip(), value.strip()
    check_tag(key, value)
    return key, value


def parse_tags(texts: list[str] | tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for text in texts:
        key, value = parse_tag(text)
        tags[key] = value
    return check_tags(tags)


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"A node can carry at most {MAX_TAGS} tags; {len(tags)} were given.")
    for key, value in tags.items():
        check_tag(key, value)
    return tags
