"""Events, rules, channels and deliveries as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from fleetrun.core.events import NOTIFY_STATUSES
from fleetrun.schemas.base import Request, Response


class Event(Response):
    """EventBridge's envelope (`detail-type` on the wire), and its place in the log."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str = "0"
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str = "fleetrun"
    time: str
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)
    seq: int = Field(0, description="position in the event log (for `after`)")

    def envelope(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude={"seq"})


EventShape = Literal["fleetrun", "aws"]


class RuleTargetCreate(Request):
    target: str = Field(
        description="SCHEME:ADDRESS: webhook:, email:, nats:, redis:, redis-stream:, command:"
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=256,
        description="webhook signing secret (never returned)",
    )
    input: dict[str, Any] | None = Field(
        None, description="command: targets only: the command to send, as an input template"
    )


class RuleTarget(Response):
    target: str
    has_secret: bool = False
    input: dict[str, Any] | None = None


class RuleCreate(Request):
    name: str = Field(description="1-64 letters, digits or _ + = , . @ -")
    description: str | None = Field(None, max_length=256)
    pattern: dict[str, Any] = Field(description="an EventBridge event pattern")
    targets: list[RuleTargetCreate] = Field(min_length=1, max_length=5)
    principal: str | None = Field(
        None, description="command targets send as this principal, under its policies"
    )
    enabled: bool = True
    event_shape: EventShape = Field(
        "fleetrun",
        description="the shape events are matched and delivered in: fleetrun's, or aws "
        "(SSM's EventBridge events: source aws.ssm, EC2 Command ... Status-change Notification)",
    )


class RuleUpdate(Request):
    """What changes in a rule; what is not given stays. Targets given replace them all:
    a webhook target given again without a secret keeps the one it had."""

    description: str | None = Field(None, max_length=256)
    pattern: dict[str, Any] | None = Field(None, description="an EventBridge event pattern")
    targets: list[RuleTargetCreate] | None = Field(None, min_length=1, max_length=5)
    principal: str | None = Field(
        None, description="command targets send as this principal, under its policies"
    )
    event_shape: EventShape | None = Field(
        None, description="fleetrun or aws: the shape events are matched and delivered in"
    )


class Rule(Response):
    name: str
    description: str | None = None
    pattern: dict[str, Any]
    targets: list[RuleTarget]
    principal: str | None = None
    enabled: bool
    event_shape: EventShape = "fleetrun"
    created_at: datetime
    updated_at: datetime
    warnings: list[str] = Field(
        default_factory=list,
        description="what in the pattern can never match an event fleetrun emits "
        "(a detail-type or source no event has); the rule is kept as written",
    )


class ChannelCreate(Request):
    name: str = Field(description="1-64 letters, digits or _ + = , . @ -")
    target: str = Field(description="webhook:URL, email:ADDRESS, nats:, redis:, redis-stream:")
    secret: str | None = Field(None, min_length=16, max_length=256)
    description: str | None = Field(None, max_length=256)


class Channel(Response):
    name: str
    target: str
    has_secret: bool = False
    description: str | None = None
    created_at: datetime


class Notification(Request):
    """A command's SNS-style notifications: which channel, on which statuses, per
    command or per invocation."""

    channel: str
    events: list[str] = Field(default_factory=lambda: list(NOTIFY_STATUSES))
    type: Literal["Command", "Invocation"] = "Command"


class DeliveryAttempt(Response):
    number: int
    at: datetime
    duration_ms: int
    outcome: str
    detail: str | None = None


class Delivery(Response):
    id: str
    event_id: str
    rule: str | None = None
    channel: str | None = None
    target: str
    state: str  # pending, delivered, dead
    attempts: int
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    history: list[DeliveryAttempt] = Field(default_factory=list)


class Redriven(Response):
    rule: str
    redriven: int
