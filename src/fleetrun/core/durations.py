"""Durations as people write them: `90s`, `15m`, `24h`, `30d`, or plain seconds."""

from __future__ import annotations

import re

from fleetrun.core.errors import ValidationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number is seconds."""
    match = _RE.match(text)
    if not match:
        raise ValidationError(
            f"Duration {text!r} is malformed: write a number with s, m, h, d or w, e.g. 24h."
        )
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "s"]
