"""Checks for values that come from outside, made once where they enter.

A number must fit the column it is compared with (a 64-bit signed integer in both
SQLite and PostgreSQL), a time must be one a computer can hold once it is turned into
UTC, and a name that a terminal will print must be printable text. Each check raises
our ValidationError with one sentence, so that an out-of-range value is a 400, never
an OverflowError deep in a database driver.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fleetrun.core.errors import ValidationError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")


def check_int(value: int, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """`value` itself, if it lies in [low, high]."""
    if not low <= value <= high:
        raise ValidationError(
            f"{what} {value} is out of range: give a number from {low} to {high}."
        )
    return value


def parse_int(text: str, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """A whole number written in ASCII digits (no other digits, no spaces), in range."""
    if not _INTEGER.fullmatch(text):
        raise ValidationError(f"{what} {text!r} is not a whole number from {low} to {high}.")
    return check_int(int(text), what, low, high)


def utc(at: datetime, what: str) -> datetime:
    """`at` in UTC (a time without a zone is taken as UTC), if it can be held as one."""
    try:
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValidationError(
            f"{what} {at.isoformat()} is out of range: give a time between the years 1 and 9999 "
            "in UTC."
        ) from None


def check_printable(text: str, what: str) -> str:
    """`text` itself, if a terminal shows it as it is: no control characters, no line
    breaks, no direction overrides."""
    bad = next((ch for ch in text if not ch.isprintable()), None)
    if bad is not None:
        raise ValidationError(
            f"{what} {text!r} contains the unprintable character {bad!a}: use printable text only."
        )
    return text


def check_not_dots(name: str, what: str) -> str:
    """`name` itself, unless it is only dots: in a URL path "." and ".." are moves, not
    names, so such a name could not be addressed (and could address something else)."""
    if name.strip(".") == "":
        raise ValidationError(f"{what} {name!r} is only dots: give a name with a letter or digit.")
    return name


def check_label(text: str, what: str, max_chars: int = 256) -> str:
    """A free-form name people read (a node's name): printable, 1 to `max_chars`
    characters, without "/" (it is never a path), and not only dots."""
    if not text.strip() or len(text) > max_chars:
        raise ValidationError(f"{what} {text!r} is not valid: give 1-{max_chars} characters.")
    check_printable(text, what)
    if "/" in text:
        raise ValidationError(f"{what} {text!r} contains '/': leave it out.")
    return check_not_dots(text, what)


def escape_unprintable(text: str) -> str:
    """`text` with every unprintable character written as its escape (`\\x1b`, `\\n`),
    so that printing it cannot move the cursor, recolour the screen or fake a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
