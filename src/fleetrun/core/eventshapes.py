"""Event shapes: fleetrun's own, or AWS Systems Manager's EventBridge events.

A rule matches, and delivers, events in one shape. `fleetrun` (the default) is the
envelope of `fleetrun.core.events`. `aws` is what SSM sends to EventBridge, so that a
pattern written for SSM matches unchanged and a receiver written for SSM reads what it
expects:

    {"version": "0", "id": UUID, "detail-type": "EC2 Command Status-change Notification",
     "source": "aws.ssm", "account": "000000000000", "time": "2026-01-01T00:00:00Z",
     "region": "us-east-1", "resources": [], "detail": {"command-id": ..., "status": ...}}

Only command and invocation status changes have an SSM shape (SSM's two Run Command
detail-types); a rule in the `aws` shape sees no other event. Statuses are spelt as the
API's shapes spell them (`ssm.invocation_status`: an invocation in AccessDenied,
Terminated or Undeliverable is `Failed`, SSM keeps those words for StatusDetails), and
documents are named as the API names them (`ssmnames.document_name`: built-ins are
`AWS-<name>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetrun.core import events, ssm, ssmnames

FLEETRUN = "fleetrun"
AWS = "aws"
SHAPES = (FLEETRUN, AWS)

AWS_SOURCE = "aws.ssm"
AWS_COMMAND_STATUS = "EC2 Command Status-change Notification"
AWS_INVOCATION_STATUS = "EC2 Command Invocation Status-change Notification"
AWS_DETAIL_FIELDS: dict[str, frozenset[str]] = {
    AWS_COMMAND_STATUS: frozenset(
        {
            "command-id",
            "document-name",
            "expire-after",
            "parameters",
            "requested-date-time",
            "status",
        }
    ),
    AWS_INVOCATION_STATUS: frozenset(
        {"command-id", "document-name", "instance-id", "requested-date-time", "status"}
    ),
}
AWS_ENVELOPE_FIELDS = events.ENVELOPE_FIELDS | {"account", "region"}


def source(shape: str) -> str:
    return AWS_SOURCE if shape == AWS else events.SOURCE


def detail_fields(shape: str) -> dict[str, frozenset[str]]:
    """Per detail-type, every field its detail may have in this shape."""
    return AWS_DETAIL_FIELDS if shape == AWS else events.DETAIL_FIELDS


def envelope_fields(shape: str) -> frozenset[str]:
    return AWS_ENVELOPE_FIELDS if shape == AWS else events.ENVELOPE_FIELDS


def shaped(event: Mapping[str, Any], shape: str) -> dict[str, Any] | None:
    """The event in this shape; None when it has none (an event SSM does not send)."""
    if shape != AWS:
        return dict(event)
    return aws_event(event)


def aws_event(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A fleetrun command or invocation event as SSM sends it to EventBridge."""
    detail = event.get("detail") or {}
    kind = event.get("detail-type")
    common = {
        "command-id": detail.get("command-id"),
        "document-name": ssmnames.document_name(str(detail.get("document-name") or "")),
        "requested-date-time": detail.get("requested-date-time"),
        "status": ssm.invocation_status(str(detail.get("status"))),
    }
    if kind == events.COMMAND_STATUS:
        detail_type, resources = AWS_COMMAND_STATUS, []
        shaped_detail = {
            **common,
            "expire-after": detail.get("expire-after"),
            "parameters": detail.get("parameters") or {},
        }
    elif kind == events.INVOCATION_STATUS:
        node = str(detail.get("node-id"))
        detail_type, resources = AWS_INVOCATION_STATUS, [_instance_arn(node)]
        shaped_detail = {**common, "instance-id": node}
    else:
        return None
    return {
        "version": event.get("version", events.VERSION),
        "id": event.get("id"),
        "detail-type": detail_type,
        "source": AWS_SOURCE,
        "account": ssmnames.ACCOUNT_ID,
        "time": _seconds(event.get("time")),
        "region": ssmnames.REGION,
        "resources": resources,
        "detail": shaped_detail,
    }


def _instance_arn(node_id: str) -> str:
    return f"arn:aws:ssm:{ssmnames.REGION}:{ssmnames.ACCOUNT_ID}:managed-instance/{node_id}"


def _seconds(time: Any) -> Any:
    """EventBridge's time: ISO 8601 to the second (2026-01-01T00:00:00Z)."""
    if isinstance(time, str) and len(time) > 20 and time.endswith("Z"):
        return time[:19] + "Z"
    return time
