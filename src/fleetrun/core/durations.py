"""Durations as people write them: `90s`, `15m`, `24h`, `30d`, or plain seconds.

A duration is at most MAX_DURATION_S (100 years): longer ones are no one's intent, and
"that long ago" must still be a time a computer can hold.
"""

from __future__ import annotations

import re

from fleetrun.core.errors import ValidationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"\s*([0-9]{1,30}(?:\.[0-9]{1,30})?)\s*([smhdw]?)\s*")
MAX_DURATION_S = 100 * 365 * 86400


def is_duration(text: str) -> bool:
    """Whether `text` is written as a duration (of any length)."""
    return _RE.fullmatch(text) is not None


def parse_duration(text: str, what: str = "Duration") -> float:
    """Seconds in `text`; a bare number is seconds."""
    match = _RE.fullmatch(text)
    if not match:
        raise ValidationError(
            f"{what} {text!r} is malformed: write a number with s, m, h, d or w, e.g. 24h."
        )
    number, unit = match.groups()
    seconds = float(number) * _UNITS[unit or "s"]
    if seconds > MAX_DURATION_S:
        raise ValidationError(f"{what} {text!r} is too long: give at most 100 years (36500d).")
    return seconds
