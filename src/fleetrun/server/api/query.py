"""Query parameters the listings share: time bounds and tag filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tags


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time, or a duration meaning that long ago (`1h`, `30m`, `2d`)."""
    if value is None or value == "":
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return at if at.tzinfo else at.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except ValidationError:
        raise ValidationError(
            f"{name} {value!r} is not a time: give an ISO 8601 time (2026-01-31T12:00:00Z) "
            "or how long ago (30m, 2h, 7d)."
        ) from None


def tag_filters(values: list[str] | None) -> dict[str, str]:
    return parse_tags(values or [])
