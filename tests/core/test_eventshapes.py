"""fleetrun's events in SSM's EventBridge shape: the envelope, the detail fields and the
statuses SSM sends, so that patterns written for SSM match unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetrun.core import delivery, events, eventshapes
from fleetrun.core.errors import ValidationError
from fleetrun.core.patterns import compile_pattern

AT = datetime(2026, 7, 10, 21, 51, 30, 49000, tzinfo=UTC)
NODE = "n-0123456789abcdef0"
COMMAND_ID = "e8d3c0e4-71f7-4491-898f-c9b35bee5f3b"


def command_event(status="Success", document="RunShellScript"):
    detail = events.command_detail(
        command_id=COMMAND_ID,
        document_name=document,
        document_version="1",
        parameters={"commands": ["date"]},
        requested_at=AT,
        expires_at=AT,
        status=status,
        status_detail=status,
        principal="alice",
        counts=(2, 2, 0),
        comment=None,
    )
    return events.envelope(
        "id-1", events.COMMAND_STATUS, AT, [f"frn:fleetrun:command/{COMMAND_ID}"], detail
    )


def invocation_event(status="Success", document="RunShellScript"):
    detail = events.invocation_detail(
        command_id=COMMAND_ID,
        document_name=document,
        node_id=NODE,
        node_name="web01",
        requested_at=AT,
        status=status,
        status_detail=status,
        exit_code=0,
    )
    return events.envelope(
        "id-2", events.INVOCATION_STATUS, AT, [f"frn:fleetrun:node/{NODE}"], detail
    )


def test_a_command_event_in_ssm_shape_is_ssm_example_event_field_for_field():
    assert eventshapes.aws_event(command_event()) == {
        "version": "0",
        "id": "id-1",
        "detail-type": "EC2 Command Status-change Notification",
        "source": "aws.ssm",
        "account": "000000000000",
        "time": "2026-07-10T21:51:30Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "command-id": COMMAND_ID,
            "document-name": "AWS-RunShellScript",
            "expire-after": "2026-07-10T21:51:30.049Z",
            "parameters": {"commands": ["date"]},
            "requested-date-time": "2026-07-10T21:51:30.049Z",
            "status": "Success",
        },
    }


def test_an_invocation_event_in_ssm_shape_names_the_node_as_instance_id():
    shaped = eventshapes.aws_event(invocation_event(document="Patch"))
    assert shaped is not None
    assert shaped["detail-type"] == "EC2 Command Invocation Status-change Notification"
    assert shaped["resources"] == [f"arn:aws:ssm:us-east-1:000000000000:managed-instance/{NODE}"]
    assert shaped["detail"] == {
        "command-id": COMMAND_ID,
        "document-name": "Patch",
        "instance-id": NODE,
        "requested-date-time": "2026-07-10T21:51:30.049Z",
        "status": "Success",
    }
    fields = eventshapes.AWS_DETAIL_FIELDS[shaped["detail-type"]]
    assert set(shaped["detail"]) == fields


@pytest.mark.parametrize(
    ("status", "ssm"),
    [
        ("Pending", "Pending"),
        ("Delayed", "Delayed"),
        ("InProgress", "InProgress"),
        ("Success", "Success"),
        ("Failed", "Failed"),
        ("TimedOut", "TimedOut"),
        ("Cancelling", "Cancelling"),
        ("Cancelled", "Cancelled"),
        ("AccessDenied", "Failed"),
        ("Terminated", "Failed"),
        ("Undeliverable", "Failed"),
    ],
)
def test_statuses_are_spelt_as_ssm_spells_them(status, ssm):
    shaped = eventshapes.aws_event(invocation_event(status))
    assert shaped is not None and shaped["detail"]["status"] == ssm


@pytest.mark.parametrize(
    "detail_type",
    [
        events.NODE_REGISTRATION,
        events.NODE_STATUS,
        events.API_CALL_DENIED,
        events.RUN_COMMAND_STATE,
    ],
)
def test_events_ssm_does_not_send_have_no_ssm_shape(detail_type):
    event = events.envelope("id", detail_type, AT, [], {"node-id": NODE})
    assert eventshapes.shaped(event, "aws") is None
    assert eventshapes.shaped(event, "fleetrun") == event


@pytest.mark.parametrize(
    ("pattern", "event", "matches"),
    [
        # as AWS's EventBridge reference gives it for Run Command
        (
            {"source": ["aws.ssm"], "detail-type": ["EC2 Command Status-change Notification"]},
            command_event(),
            True,
        ),
        (
            {"source": ["aws.ssm"], "detail-type": ["EC2 Command Status-change Notification"]},
            invocation_event(),
            False,
        ),
        (
            {
                "source": ["aws.ssm"],
                "detail-type": ["EC2 Command Invocation Status-change Notification"],
                "detail": {"status": ["Failed"]},
            },
            invocation_event("AccessDenied"),
            True,
        ),
        (
            {
                "source": ["aws.ssm"],
                "detail-type": ["EC2 Command Invocation Status-change Notification"],
                "detail": {"status": ["Failed"], "document-name": ["AWS-RunShellScript"]},
            },
            invocation_event("Success"),
            False,
        ),
        (
            {"source": ["aws.ssm"], "detail": {"instance-id": [NODE]}},
            invocation_event(),
            True,
        ),
        ({"source": ["fleetrun"]}, invocation_event(), False),  # the fleetrun names are gone
    ],
)
def test_patterns_written_for_ssm_match_the_ssm_shape(pattern, event, matches):
    shaped = eventshapes.aws_event(event)
    assert shaped is not None
    assert compile_pattern(pattern).matches(shaped) is matches


def test_warnings_and_templates_speak_the_rules_shape():
    ssm = {"source": ["aws.ssm"], "detail-type": ["EC2 Command Status-change Notification"]}
    assert delivery.pattern_warnings(ssm, "aws") == []
    warned = delivery.pattern_warnings(ssm)
    assert any("set the rule's event shape to aws" in w for w in warned)
    assert any(
        "'EC2 Command Status-change Notification', which fleetrun never emits" in w for w in warned
    )
    typo = delivery.pattern_warnings({"detail-type": ["EC2 Command Status Notification"]}, "aws")
    assert typo == [
        "The pattern names the detail-type 'EC2 Command Status Notification', which fleetrun "
        "never emits in the aws shape: did you mean 'EC2 Command Status-change Notification'?"
    ]
    kinds = ["EC2 Command Invocation Status-change Notification"]
    delivery.check_template({"n": "$.detail.instance-id", "r": "$.region"}, kinds, "aws")
    with pytest.raises(ValidationError, match="has no detail field 'node-id'"):
        delivery.check_template({"n": "$.detail.node-id"}, kinds, "aws")
    with pytest.raises(ValidationError, match="which no event has"):
        delivery.check_template({"r": "$.region"}, None)
