"""Paging and status filters shared by the listings."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import INT64_MAX, parse_int, utc
from fleetrun.core.statuses import CommandStatus, InvocationStatus, StatusDetail

STATUS_VALUES = {s.value for s in InvocationStatus} | {s.value for s in CommandStatus}
DETAIL_VALUES = {d.value for d in StatusDetail}
BAD_CURSOR = "The cursor is not valid: pass the next_cursor of the previous page unchanged."


def status_clause(status_column: Any, detail_column: Any, value: str) -> Any:
    """A filter on a status (Failed, TimedOut ...) or on a detail (DeliveryTimedOut ...)."""
    if value in STATUS_VALUES:
        return status_column == value
    if value in DETAIL_VALUES:
        return detail_column == value
    raise ValidationError(
        f"Status {value!r} is not known: use a status such as Success, Failed, TimedOut, "
        "Cancelled, or a detail such as DeliveryTimedOut."
    )


def encode_cursor(at: datetime, last_id: str) -> str:
    raw = json.dumps([at.isoformat(), last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> int:
    """A cursor that is a position in a numbered log."""
    try:
        return parse_int(cursor, "The cursor", 0, INT64_MAX)
    except ValidationError:
        raise ValidationError(BAD_CURSOR) from None


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
        return utc(datetime.fromisoformat(at), "The cursor's time"), str(last_id)
    except (ValueError, TypeError, ValidationError) as exc:
        raise ValidationError(BAD_CURSOR) from exc
