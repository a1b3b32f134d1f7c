"""Tags: `key=value` labels on nodes, and how they are written on a command line."""

from __future__ import annotations

import re
from collections.abc import Iterable

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


def retagged(
    current: dict[str, str], set_: dict[str, str], remove: Iterable[str]
) -> dict[str, str]:
    """The tags a node has after setting `set_` and removing the keys in `remove`."""
    removed = set(remove)
    missing = sorted(removed - set(current))
    if missing:
        raise ValidationError(
            f"The node has no tag {', '.join(missing)}: nothing was changed; see its tags with "
            "`fleetrun nodes show`."
        )
    if removed & set(set_):
        raise ValidationError("A tag key cannot be both set and removed in one change.")
    after = {k: v for k, v in current.items() if k not in removed}
    return check_tags({**after, **set_})
