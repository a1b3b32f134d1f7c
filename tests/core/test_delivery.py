"""Targets, input templates, backoff and webhook signatures: pure functions, tables of
(input, expected)."""

from __future__ import annotations

import pytest

from fleetrun.core import delivery
from fleetrun.core.errors import ValidationError
from fleetrun.core.events import (
    COMMAND_STATUS,
    INVOCATION_STATUS,
    NODE_REGISTRATION,
    notification_message,
    notification_wanted,
)

EVENT = {
    "version": "0",
    "id": "e-1",
    "detail-type": NODE_REGISTRATION,
    "source": "fleetrun",
    "time": "2026-01-01T00:00:00.000Z",
    "resources": ["frn:fleetrun:node/n-0123456789abcdef0"],
    "detail": {"node-id": "n-0123456789abcdef0", "node-name": "web1", "tags": {"env": "prod"}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("webhook:https://hooks.example.com/x?y=1", ("webhook", "https://hooks.example.com/x?y=1")),
        ("email:ops@example.com", ("email", "ops@example.com")),
        ("nats:fleet.events", ("nats", "fleet.events")),
        ("nats:fleet.>", ("nats", "fleet.>")),
        ("redis:fleet-events", ("redis", "fleet-events")),
        ("redis-stream:fleet:events", ("redis-stream", "fleet:events")),
        ("command:Bootstrap", ("command", "Bootstrap")),
    ],
)
def test_targets_that_parse(text, expected):
    target = delivery.parse_target(text)
    assert (target.scheme, target.address) == expected
    assert str(target) == text


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("sqs:queue", "unknown scheme"),
        ("no-scheme", "unknown scheme"),
        ("webhook:ftp://example.com", "not a valid webhook"),
        ("webhook:https://", "not a valid webhook"),
        ("email:ops", "not a valid e-mail address"),
        ("email:ops@@example.com", "not a valid e-mail address"),
        ("nats:has space", "not a valid NATS subject"),
        ("redis:", "needs a channel or stream name"),
        ("command:no spaces allowed", "does not name a document"),
    ],
)
def test_targets_refused_with_a_sentence(text, phrase):
    with pytest.raises(ValidationError, match=phrase) as info:
        delivery.parse_target(text)
    assert info.value.message.endswith(".")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$.detail.node-id", "n-0123456789abcdef0"),
        ("$.detail.tags", {"env": "prod"}),
        ("$.detail.tags.env", "prod"),
        ("$.resources[0]", "frn:fleetrun:node/n-0123456789abcdef0"),
        ("$.detail.missing", None),
        ("echo <$.detail.node-name> on <$.detail.tags.env>", "echo web1 on prod"),
        ("echo <$.detail.missing>!", "echo !"),
        (
            {"targets": [{"key": "NodeIds", "values": ["$.detail.node-id"]}]},
            {"targets": [{"key": "NodeIds", "values": ["n-0123456789abcdef0"]}]},
        ),
        ("no path here", "no path here"),
        (7, 7),
    ],
)
def test_input_templates_take_values_from_the_event(template, expected):
    assert delivery.render_input(template, EVENT) == expected


@pytest.mark.parametrize(
    ("template", "kinds", "phrase"),
    [
        ("$.detail.ping-status", [COMMAND_STATUS], "has no detail field 'ping-status'"),
        ("<$.detail.nope>", None, "any event has no detail field 'nope'"),
        ("$.account", None, "which no event has"),
    ],
)
def test_templates_reading_fields_the_events_never_have_are_refused(template, kinds, phrase):
    with pytest.raises(ValidationError, match=phrase):
        delivery.check_template(template, kinds)


def test_templates_reading_known_fields_pass():
    delivery.check_template({"a": "$.detail.node-id", "b": "$.time"}, [NODE_REGISTRATION])
    delivery.check_template("$.detail.node-id", [COMMAND_STATUS, INVOCATION_STATUS])
    delivery.check_template("$.detail.status", None)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail-type": ["A", "B"]}, ["A", "B"]),
        ({"detail-type": [{"prefix": "Node"}]}, None),
        ({"source": ["fleetrun"]}, None),
        ({"detail-type": []}, None),
    ],
)
def test_the_detail_types_a_pattern_names(pattern, expected):
    assert delivery.pattern_detail_types(pattern) == expected


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (3, 0.5, 3.0),
        (10, 1.0, 60.0),  # capped
        (10, 0.0, 30.0),  # half the cap at least: jitter never brings retries back at once
        (1000, 1.0, 60.0),  # no overflow
        (0, 1.0, 1.0),
    ],
)
def test_backoff_is_exponential_capped_and_jittered(attempt, jitter, expected):
    assert delivery.backoff_s(attempt, base_s=1.0, cap_s=60.0, jitter=jitter) == expected


@pytest.mark.parametrize(
    ("status", "retry"),
    [(500, True), (503, True), (408, True), (429, True), (400, False), (404, False), (410, False)],
)
def test_which_webhook_answers_are_retried(status, retry):
    assert delivery.retryable_status(status) is retry


def test_signatures_verify_and_refuse_tampering_and_replays():
    body = b'{"id":"e-1"}'
    signature = delivery.sign("s3cret-s3cret-s3cret", "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    ok = {"now_s": 1700000010.0, "tolerance_s": 300}
    assert delivery.verify("s3cret-s3cret-s3cret", "1700000000", body, signature, **ok)
    assert not delivery.verify("other-secret-other", "1700000000", body, signature, **ok)
    assert not delivery.verify("s3cret-s3cret-s3cret", "1700000000", body + b" ", signature, **ok)
    assert not delivery.verify("s3cret-s3cret-s3cret", "1700000001", body, signature, **ok)
    late = {"now_s": 1700000000.0 + 301, "tolerance_s": 300}
    assert not delivery.verify("s3cret-s3cret-s3cret", "1700000000", body, signature, **late)
    assert not delivery.verify("s3cret-s3cret-s3cret", "soon", body, signature, **ok)


@pytest.mark.parametrize(
    ("config", "detail_type", "status", "wanted"),
    [
        ({"type": "Command"}, COMMAND_STATUS, "Success", True),
        ({"type": "Command"}, COMMAND_STATUS, "Pending", False),
        ({"type": "Command"}, COMMAND_STATUS, "Cancelling", False),
        ({"type": "Command"}, INVOCATION_STATUS, "Success", False),
        ({"type": "Invocation"}, INVOCATION_STATUS, "InProgress", True),
        ({"type": "Invocation", "events": ["Failed"]}, INVOCATION_STATUS, "Success", False),
        ({"type": "Invocation", "events": ["Failed"]}, INVOCATION_STATUS, "Failed", True),
    ],
)
def test_which_changes_notify(config, detail_type, status, wanted):
    assert notification_wanted(config, detail_type, status) is wanted


def test_notification_messages_carry_ssms_fields():
    event = {
        "detail-type": INVOCATION_STATUS,
        "time": "2026-01-01T00:00:01.000Z",
        "detail": {
            "command-id": "c-1",
            "document-name": "RunShellScript",
            "node-id": "n-1",
            "requested-date-time": "2026-01-01T00:00:00.000Z",
            "status": "Failed",
        },
    }
    message = notification_message(event, "/v1/commands/c-1/invocations/n-1/output")
    assert message == {
        "EventTime": "2026-01-01T00:00:01.000Z",
        "DocumentName": "RunShellScript",
        "CommandId": "c-1",
        "RequestedDateTime": "2026-01-01T00:00:00.000Z",
        "Status": "Failed",
        "OutputLocation": "/v1/commands/c-1/invocations/n-1/output",
        "NodeId": "n-1",
    }


@pytest.mark.parametrize(
    ("pattern", "phrases"),
    [
        (
            {"source": ["fleetrun"], "detail-type": ["Invocation Status Change"]},
            ["'Invocation Status Change', which fleetrun never emits: did you mean "
             "'Command Invocation Status-change Notification'?"],
        ),
        ({"detail-type": ["node registration"]}, ["did you mean 'Node Registration'?"]),
        ({"detail-type": ["Something Else"]}, ["it emits 'Command Status-change Notification',"]),
        ({"source": ["aws.ssm"]}, ["the source 'aws.ssm', which no event has"]),
        (
            {"$or": [{"detail-type": ["Node Registration"]}, {"detail-type": ["Nope"]}]},
            ["'Nope', which fleetrun never emits"],
        ),
    ],
)  # fmt: skip
def test_a_pattern_naming_what_fleetrun_never_emits_is_warned_of(pattern, phrases):
    warnings = delivery.pattern_warnings(pattern)
    assert len(warnings) == len(phrases)
    for warning, phrase in zip(warnings, phrases, strict=True):
        assert phrase in warning and "\n" not in warning


@pytest.mark.parametrize(
    "pattern",
    [
        {"source": ["fleetrun"], "detail-type": [INVOCATION_STATUS, COMMAND_STATUS]},
        {"detail-type": [{"prefix": "Node"}], "source": [{"anything-but": "x"}]},
        {"detail": {"status": ["Failed"]}},
    ],
)
def test_a_pattern_that_can_match_has_no_warning(pattern):
    assert delivery.pattern_warnings(pattern) == []
