"""Query parameters the listings share: time bounds, sequence numbers and tag filters.

Every number and time a caller writes in a query is checked here, once, so that a
value out of range is a 400 with a sentence rather than an overflow in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query

from fleetrun.core.durations import is_duration, parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import INT64_MAX, utc
from fleetrun.core.tags import parse_tags

# A position in a numbered log (events, audit records): 0 means "from the start".
Seq = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
# A version or step number: never negative, never past a 64-bit column.
Count = Annotated[int | None, Query(ge=0, le=INT64_MAX)]


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time, or a duration meaning that long ago (`1h`, `30m`, `2d`); UTC."""
    if value is None or value == "":
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return utc(at, name)
    if not is_duration(value):
        raise ValidationError(
            f"{name} {value!r} is not a time: give an ISO 8601 time (2026-01-31T12:00:00Z) "
            "or how long ago (30m, 2h, 7d)."
        )
    return datetime.now(UTC) - timedelta(seconds=parse_duration(value, name))


def tag_filters(values: list[str] | None) -> dict[str, str]:
    return parse_tags(values or [])
