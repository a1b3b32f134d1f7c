"""Output alarms and forwarders as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from fleetrun.core.targets import Target
from fleetrun.schemas.base import Request, Response

TreatMissingName = Literal["ok", "breaching", "missing", "ignore"]


class AlarmCreate(Request):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=256)
    pattern: str = Field(min_length=1, max_length=1024, description="text, or --regex")
    regex: bool = False
    targets: list[Target] = Field(
        default_factory=list, description="which nodes' output counts (none: every node)"
    )
    document_name: str | None = Field(None, max_length=128, description="only this document")
    threshold: int = Field(ge=1, description="matching lines per period that breach")
    period_s: int = Field(description="seconds per period (10s-1d, a multiple of 10)")
    evaluation_periods: int = Field(1, ge=1, le=100)
    treat_missing: TreatMissingName = "ok"


class Datapoint(Response):
    period_start: datetime
    lines: int  # lines the nodes in scope printed in the period
    matched: int  # of them, lines that matched


class Alarm(Response):
    name: str
    description: str | None
    pattern: str
    regex: bool
    targets: list[Target]
    document_name: str | None
    threshold: int
    period_s: int
    evaluation_periods: int
    treat_missing: str
    state: str  # OK, ALARM or INSUFFICIENT_DATA
    state_reason: str
    state_changed_at: datetime
    created_at: datetime
    datapoints: list[Datapoint] = Field(
        default_factory=list, description="the latest periods, newest first"
    )


class AlarmHistoryItem(Response):
    at: datetime
    old_state: str
    new_state: str
    reason: str


class Forwarder(Response):
    name: str  # syslog or otlp
    kind: str
    destination: str
    position: int  # the last output chunk it delivered
    lag_chunks: int  # stored chunks it has not delivered yet
    sent_lines: int
    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
