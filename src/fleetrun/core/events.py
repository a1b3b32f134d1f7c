"""Events: what happened, in EventBridge's envelope, and the shapes of their details.

    {"version": "0", "id": UUID, "detail-type": "...", "source": "fleetrun",
     "time": "2026-01-01T00:00:00Z", "resources": ["frn:fleetrun:node/n-..."],
     "detail": {...}}

Command and invocation events carry the fields of SSM's "EC2 Command Status-change
Notification" and "EC2 Command Invocation Status-change Notification" (`instance-id`
is `node-id` here), so a rule written for SSM carries over once its `source` and
`detail-type` names are changed. `DETAIL_FIELDS` lists, per detail-type, every field
its detail may have: input templates are checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

SOURCE = "fleetrun"
VERSION = "0"

COMMAND_STATUS = "Command Status-change Notification"
INVOCATION_STATUS = "Command Invocation Status-change Notification"
NODE_REGISTRATION = "Node Registration"
NODE_DEREGISTRATION = "Node Deregistration"
NODE_STATUS = "Node Status-change Notification"
LOCAL_POLICY_REFUSAL = "Local Policy Refusal"
API_CALL_DENIED = "API Call Denied"
RUN_COMMAND_STATE = "Run Command State-change Notification"
ALARM_STATE = "Output Alarm State-change Notification"

DETAIL_FIELDS: dict[str, frozenset[str]] = {
    COMMAND_STATUS: frozenset(
        {
            "command-id",
            "document-name",
            "document-version",
            "expire-after",
            "parameters",
            "requested-date-time",
            "status",
            "status-detail",
            "principal",
            "target-count",
            "completed-count",
            "error-count",
            "comment",
        }
    ),
    INVOCATION_STATUS: frozenset(
        {
            "command-id",
            "document-name",
            "node-id",
            "node-name",
            "requested-date-time",
            "status",
            "status-detail",
            "exit-code",
        }
    ),
    NODE_REGISTRATION: frozenset(
        {"node-id", "node-name", "activation-id", "tags", "platform", "agent-version"}
    ),
    NODE_DEREGISTRATION: frozenset({"node-id", "node-name"}),
    NODE_STATUS: frozenset({"node-id", "node-name", "ping-status"}),
    LOCAL_POLICY_REFUSAL: frozenset(
        {"command-id", "document-name", "node-id", "node-name", "status-detail", "reason"}
    ),
    API_CALL_DENIED: frozenset(
        {"principal", "action", "resource", "reason", "source-ip", "request-id", "path", "kind"}
    ),
    RUN_COMMAND_STATE: frozenset(
        {
            "run-command",
            "run-id",
            "node-id",
            "group",
            "execution-state",
            "provisioning-state",
            "execution-message",
            "command-id",
            "document-name",
        }
    ),
    ALARM_STATE: frozenset({"alarm-name", "state", "previous-state", "configuration"}),
}
ENVELOPE_FIELDS = frozenset({"version", "id", "detail-type", "source", "time", "resources"})


def iso(at: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as SSM writes its dates."""
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def envelope(
    event_id: str,
    detail_type: str,
    time: datetime,
    resources: list[str],
    detail: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "id": event_id,
        "detail-type": detail_type,
        "source": SOURCE,
        "time": iso(time),
        "resources": list(resources),
        "detail": dict(detail),
    }


def command_detail(
    *,
    command_id: str,
    document_name: str,
    document_version: str | None,
    parameters: Mapping[str, Any],
    requested_at: datetime,
    expires_at: datetime | None,
    status: str,
    status_detail: str,
    principal: str | None,
    counts: tuple[int, int, int],
    comment: str | None,
) -> dict[str, Any]:
    target, completed, errors = counts
    return {
        "command-id": command_id,
        "document-name": document_name,
        "document-version": document_version,
        "expire-after": iso(expires_at),
        "parameters": {k: list(v) if isinstance(v, list) else [v] for k, v in parameters.items()},
        "requested-date-time": iso(requested_at),
        "status": status,
        "status-detail": status_detail,
        "principal": principal,
        "target-count": target,
        "completed-count": completed,
        "error-count": errors,
        "comment": comment,
    }


def invocation_detail(
    *,
    command_id: str,
    document_name: str,
    node_id: str,
    node_name: str | None,
    requested_at: datetime,
    status: str,
    status_detail: str,
    exit_code: int | None,
) -> dict[str, Any]:
    return {
        "command-id": command_id,
        "document-name": document_name,
        "node-id": node_id,
        "node-name": node_name,
        "requested-date-time": iso(requested_at),
        "status": status,
        "status-detail": status_detail,
        "exit-code": exit_code,
    }


# -- SNS-style notifications of a command ------------------------------------------

# Pending and Cancelling are reported by commands but do not notify (as in SSM).
NOTIFY_STATUSES = ("InProgress", "Success", "Failed", "TimedOut", "Cancelled")


def notification_wanted(config: Mapping[str, Any], detail_type: str, status: str) -> bool:
    """Whether a command's notification configuration asks for this event."""
    kind = COMMAND_STATUS if config.get("type", "Command") == "Command" else INVOCATION_STATUS
    wanted = config.get("events") or list(NOTIFY_STATUSES)
    return detail_type == kind and status in NOTIFY_STATUSES and status in wanted


def notification_message(event: Mapping[str, Any], output_location: str) -> dict[str, Any]:
    """The message a channel receives for a command or invocation event (the fields of
    SSM's SNS notifications)."""
    detail = event["detail"]
    message = {
        "EventTime": event["time"],
        "DocumentName": detail.get("document-name"),
        "CommandId": detail.get("command-id"),
        "RequestedDateTime": detail.get("requested-date-time"),
        "Status": detail.get("status"),
        "OutputLocation": output_location,
    }
    if event["detail-type"] == COMMAND_STATUS:
        message["ExpiresAfter"] = detail.get("expire-after")
    else:
        message["NodeId"] = detail.get("node-id")
    return message
