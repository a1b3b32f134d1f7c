"""Rules in SSM's EventBridge shape, in process: a pattern written for SSM's Run Command
events matches fleetrun's events unchanged, and the webhook receives them as SSM sends
them; the rule's shape is set, kept and changed through the SDK and the CLI."""

from __future__ import annotations

import json

from tests.e2e.receivers import WebhookReceiver
from tests.harness import wait_for
from tests.inprocess import run_cli

SECRET = "a-webhook-secret-of-some-length"
# AWS's EventBridge pattern for Run Command's command status changes, and the same with
# the invocation detail-type and a status, as SSM's console writes it.
SSM_COMMANDS = {"source": ["aws.ssm"], "detail-type": ["EC2 Command Status-change Notification"]}
SSM_FAILED_INVOCATIONS = {
    "source": ["aws.ssm"],
    "detail-type": ["EC2 Command Invocation Status-change Notification"],
    "detail": {"status": ["Failed"]},
}


def _hook(app, name, url, pattern, shape="aws"):
    return app.client.create_rule(
        name,
        pattern=pattern,
        targets=[{"target": f"webhook:{url}", "secret": SECRET}],
        event_shape=shape,
    )


def _run(app, node, exit_code):
    command = app.client.send_command(script=f"exit {exit_code}", node_ids=[node.node_id])
    with app.connect(node) as session:
        session.answer(exit_code=exit_code, command_id=command.id)
        app.client.wait(command.id, timeout_s=30)
    return command


def test_an_ssm_pattern_matches_and_the_webhook_gets_ssm_events(app):
    ok, bad = app.enrol(2)
    with WebhookReceiver(SECRET) as commands, WebhookReceiver(SECRET) as failures:
        rule = _hook(app, "ssm-commands", commands.url, SSM_COMMANDS)
        assert rule.event_shape == "aws" and rule.warnings == []
        _hook(app, "ssm-failures", failures.url, SSM_FAILED_INVOCATIONS)
        _hook(app, "native", failures.url, SSM_COMMANDS, shape="fleetrun")  # never matches
        good = _run(app, ok, 0)
        failed = _run(app, bad, 3)

        def finished():
            seen = [r.json for r in commands.delivered()]
            return [e for e in seen if e["detail"]["status"] in ("Success", "Failed")]

        done = wait_for(lambda: len(finished()) == 2 and finished(), timeout_s=30, what="events")
        by_id = {e["detail"]["command-id"]: e for e in done}
        event = by_id[good.id]
        assert event["source"] == "aws.ssm"
        assert event["detail-type"] == "EC2 Command Status-change Notification"
        assert (event["account"], event["region"]) == ("000000000000", "us-east-1")
        assert set(event["detail"]) == {
            "command-id",
            "document-name",
            "expire-after",
            "parameters",
            "requested-date-time",
            "status",
        }
        assert event["detail"]["document-name"] == "AWS-RunShellScript"
        assert by_id[failed.id]["detail"]["status"] == "Failed"
        assert all(r.verified for r in commands.requests)

        (invocation,) = wait_for(
            lambda: [r.json for r in failures.delivered()], timeout_s=30, what="the failure"
        )
        assert invocation["detail-type"] == "EC2 Command Invocation Status-change Notification"
        assert invocation["detail"]["instance-id"] == bad.node_id
        assert invocation["detail"]["command-id"] == failed.id
        assert invocation["resources"] == [
            f"arn:aws:ssm:us-east-1:000000000000:managed-instance/{bad.node_id}"
        ]
    # The fleetrun-shaped rule with the same pattern saw none of it.
    assert app.client.list_rule_deliveries("native") == []


def test_the_shape_is_kept_changed_and_shown_by_the_cli(app, tmp_path):
    pattern = tmp_path / "ssm.json"
    pattern.write_text(json.dumps(SSM_COMMANDS))
    made = app.cli(
        "rules", "create", "ssm", "--pattern-file", str(pattern),
        "--target", "webhook:https://hooks.example.com/x", "--secret-env", "HOOK",
        "--event-shape", "aws", "--json",
        env={"HOOK": SECRET},
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.stdout)["event_shape"] == "aws"
    assert "Warning" not in made.stderr
    # A description changes; the shape stays.
    assert app.cli("rules", "update", "ssm", "--description", "ops").exit_code == 0
    assert app.client.get_rule("ssm").event_shape == "aws"
    back = app.cli("rules", "update", "ssm", "--event-shape", "fleetrun")
    assert back.exit_code == 0
    assert "source is 'fleetrun' in the fleetrun shape" in back.stderr  # told it cannot match
    shown = app.cli("rules", "show", "ssm")
    assert "Event shape" in shown.stdout and "fleetrun" in shown.stdout
    bad = app.cli("rules", "update", "ssm", "--event-shape", "ssm")
    assert bad.exit_code == 2 and "'ssm' is not one of 'fleetrun', 'aws'" in bad.stderr


def test_a_command_target_template_reads_ssm_fields_in_the_ssm_shape(app):
    app.client.create_principal("responder")
    app.client.attach("responder", role="Operator")
    template = {"targets": [{"key": "NodeIds", "values": ["$.detail.instance-id"]}]}
    rule = app.client.create_rule(
        "retry",
        pattern=SSM_FAILED_INVOCATIONS,
        targets=[
            {
                "target": "command:RunShellScript",
                "input": {**template, "parameters": {"commands": ["true"]}},
            }
        ],
        principal="responder",
        event_shape="aws",
    )
    assert rule.event_shape == "aws"
    refused = app.cli(
        "rules", "update", "retry", "--event-shape", "fleetrun",
    )  # fmt: skip
    assert refused.exit_code != 0
    assert "has no detail field 'instance-id'" in refused.stderr
    assert app.client.get_rule("retry").event_shape == "aws"  # nothing changed


def test_rules_test_puts_a_fleetrun_event_in_ssm_shape_offline(app, tmp_path):
    [node] = app.enrol(1)
    _run(app, node, 3)
    listed = app.cli(
        "events", "list", "--detail-type", "Command Invocation Status-change Notification", "--json"
    )
    failed = next(e for e in json.loads(listed.stdout) if e["detail"]["status"] == "Failed")
    event, pattern = tmp_path / "event.json", tmp_path / "pattern.json"
    event.write_text(json.dumps(failed))
    pattern.write_text(json.dumps(SSM_FAILED_INVOCATIONS))
    args = ["rules", "test", "--pattern-file", str(pattern), "--event-file", str(event), "--json"]
    assert json.loads(run_cli(*args).stdout) == {"match": False}  # fleetrun's shape
    assert json.loads(run_cli(*args, "--event-shape", "aws").stdout) == {"match": True}
    node_event = tmp_path / "node.json"
    node_event.write_text(json.dumps({**failed, "detail-type": "Node Registration"}))
    args[5] = str(node_event)
    assert json.loads(run_cli(*args, "--event-shape", "aws").stdout) == {"match": False}
