"""Paging and status filters shared by the listings."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.statuses import CommandStatus, InvocationStatus, StatusDetail

STATUS_VALUES = {s.value for s in InvocationStatus} | {s.value for s in CommandStatus}
DETAIL_VALUES = {d.value for d in StatusDetail}


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


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
        return datetime.fromisoformat(at), str(last_id)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "The cursor is not valid: pass the next_cursor of the previous page unchanged."
        ) from exc
