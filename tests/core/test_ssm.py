"""The SSM vocabulary of fleetrun (core/ssm.py), as tables: statuses and details,
document and plugin names, output limits, times, NextToken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetrun.core import events, eventshapes, ssm
from fleetrun.core.statuses import CommandStatus, InvocationStatus


@pytest.mark.parametrize(
    ("status", "detail", "details", "invocation_status"),
    [
        ("Pending", "Pending", "Pending", "Pending"),
        ("Delayed", "Delayed", "Delayed", "Delayed"),
        ("InProgress", "InProgress", "In Progress", "InProgress"),
        ("Success", "Success", "Success", "Success"),
        ("Failed", "Failed", "Failed", "Failed"),
        ("Failed", "AgentRestarted", "Failed", "Failed"),
        ("Failed", "BlockedByLocalPolicy", "Failed", "Failed"),
        ("TimedOut", "DeliveryTimedOut", "Delivery Timed Out", "TimedOut"),
        ("TimedOut", "ExecutionTimedOut", "Execution Timed Out", "TimedOut"),
        ("Cancelling", "Cancelling", "Cancelling", "Cancelling"),
        ("Cancelled", "Cancelled", "Cancelled", "Cancelled"),
        ("Terminated", "ErrorThresholdExceeded", "Terminated", "Failed"),
        ("Undeliverable", "NodeDeleted", "Undeliverable", "Failed"),
        ("Undeliverable", "TooLarge", "Undeliverable", "Failed"),
        ("AccessDenied", "AccessDenied", "Access Denied", "Failed"),
    ],
)
def test_invocation_statuses_read_as_ssms(status, detail, details, invocation_status):
    assert ssm.status_details(status, detail) == details
    assert ssm.invocation_status(status) == invocation_status


@pytest.mark.parametrize(
    ("status", "detail", "details"),
    [
        ("Failed", "Incomplete", "Incomplete"),
        ("Failed", "NoInstancesInTag", "No Instances In Tag"),
        ("Failed", "AccessDenied", "Access Denied"),
        ("TimedOut", "DeliveryTimedOut", "Delivery Timed Out"),
        ("Success", "Success", "Success"),
    ],
)
def test_command_details_read_as_ssms(status, detail, details):
    assert ssm.status_details(status, detail) == details
    assert ssm.command_status(status) == status


@pytest.mark.parametrize("status", [*InvocationStatus, *CommandStatus])
def test_one_status_table_for_the_api_and_the_event_shape(status):
    """What ListCommandInvocations says and what an SSM-shaped event says agree."""
    detail = {"command-id": "c", "document-name": "RunShellScript", "status": str(status)}
    event = {"detail-type": events.INVOCATION_STATUS, "detail": {**detail, "node-id": "n-1"}}
    shaped = eventshapes.aws_event(event)
    assert shaped is not None and shaped["detail"]["status"] == ssm.invocation_status(status)
    expected = "Failed" if status in ("Terminated", "Undeliverable", "AccessDenied") else status
    assert ssm.invocation_status(status) == expected


@pytest.mark.parametrize(
    ("step", "plugin"),
    [("runShellScript", "aws:runShellScript"), ("build", "build")],
)
def test_plugin_names(step, plugin):
    assert ssm.plugin_name(step) == plugin


@pytest.mark.parametrize(
    ("text", "limit", "cut", "expected"),
    [
        ("short", 24_000, False, "short"),
        ("x" * 30, 25, False, "xxxxx--output truncated--"),
        ("x" * 10, 25, True, "xxxxx--output truncated--"),  # the head of something longer
        ("x" * 25, 25, False, "x" * 25),
    ],
)
def test_truncation_keeps_the_head(text, limit, cut, expected):
    assert ssm.truncate(text, limit, cut=cut) == expected


@pytest.mark.parametrize(
    ("stdout", "stderr", "limit", "expected"),
    [
        ("out", "", 2500, "out"),
        ("out", "err", 2500, "out\n----------ERROR-------\nerr"),
        ("o" * 100, "", 50, "o" * 27 + "\n---Output truncated---"),
        (
            "o" * 100,
            "e" * 100,
            100,
            "o" * 15
            + "\n---Output truncated---"
            + "\n----------ERROR-------\n"
            + "e" * 15
            + "\n---Error truncated----",
        ),
        (
            "o" * 10,
            "e" * 100,
            80,
            "o" * 10 + "\n----------ERROR-------\n" + "e" * 23 + "\n---Error truncated----",
        ),
    ],
)
def test_plugin_output_joins_and_cuts_like_the_agent(stdout, stderr, limit, expected):
    got = ssm.plugin_output(stdout, stderr, limit)
    assert got == expected and len(got) <= limit


def test_times_in_ssms_encodings():
    start = datetime(2019, 2, 14, 19, 26, 26, 439_000, tzinfo=UTC)
    assert ssm.epoch(start) == 1550172386.439
    assert ssm.epoch(None) is None
    assert ssm.iso(start) == "2019-02-14T19:26:26.439Z"
    assert ssm.iso(None) == ""
    assert ssm.iso_duration(start, start + timedelta(milliseconds=541)) == "PT0.541S"
    assert ssm.iso_duration(start, None) == ""


def test_next_tokens_belong_to_their_operation():
    token = ssm.next_token("ListCommands", "abc")
    assert token is not None and ssm.cursor_of("ListCommands", token) == "abc"
    assert ssm.next_token("ListCommands", None) is None
    assert ssm.cursor_of("ListCommands", None) is None
    for bad in ("%%%", "bm90IGpzb24", ssm.next_token("ListCommandInvocations", "abc")):
        with pytest.raises(ssm.NextTokenError):
            ssm.cursor_of("ListCommands", bad)
