"""`rules update` (PATCH /v1/rules/NAME, `update_rule`): a rule changed in place keeps
its deliveries and its webhook's signing secret, is checked as a new one is, and is
decided by policy (UpdateRule) and audited. The real app in process, the real CLI and
SDK, and a real webhook receiver on loopback."""

from __future__ import annotations

import json

import pytest

from fleetrun.core.errors import AccessDeniedError, NotFoundError
from tests.e2e.receivers import WebhookReceiver
from tests.harness import wait_for
from tests.inprocess import App

SECRET = "a-webhook-secret-of-some-length"
TIMED_OUT = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["TimedOut"]},
}
DELIVERY_S = 30


def _deliveries(app, rule, state=None):
    return app.client.list_rule_deliveries(rule, state=state)


def test_an_update_keeps_the_deliveries_and_the_webhook_secret(tmp_path):
    """A delivery pending when the rule changes (its webhook moved to second place,
    given again without a secret) is still there after, and is then delivered signed
    with the secret the rule was created with."""
    app = App(tmp_path, delivery_base_s=600.0, delivery_cap_s=600.0).start()
    try:
        with WebhookReceiver(SECRET, failing=True) as hook:
            app.client.create_rule(
                "on-timeout",
                pattern=TIMED_OUT,
                targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
            )
            [node] = app.enrol(1)
            command = app.client.send_command(
                script="true", node_ids=[node.node_id], delivery_timeout_s=DELIVERY_S
            )
            app.advance(DELIVERY_S + 1)
            app.client.wait(command.id, timeout_s=30)
            (pending,) = wait_for(
                lambda: [d for d in _deliveries(app, "on-timeout") if d.attempts == 1],
                timeout_s=30,
                what="the first attempt, refused",
            )
            assert hook.answered == [503]

            done = app.cli(
                "rules", "update", "on-timeout",
                "--target", "redis:fleet-events", "--target", f"webhook:{hook.url}",
                "--description", "timed-out commands", "--json",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            updated = json.loads(done.stdout)
            assert "secret" not in updated  # none made: the webhook keeps its own
            assert updated["description"] == "timed-out commands"
            assert [(t["target"], t["has_secret"]) for t in updated["targets"]] == [
                ("redis:fleet-events", False),
                (f"webhook:{hook.url}", True),
            ]
            assert [d.id for d in _deliveries(app, "on-timeout")] == [pending.id]

            hook.failing = False
            app.advance(601)
            (delivered,) = wait_for(
                lambda: _deliveries(app, "on-timeout", "delivered"),
                timeout_s=30,
                what="the pending delivery, after the update",
            )
            assert delivered.id == pending.id
            assert [a.outcome for a in delivered.history] == ["retry", "delivered"]
            assert hook.requests[-1].verified  # signed with the secret it was created with
            assert hook.delivered()[0].json["detail"]["command-id"] == command.id
    finally:
        app.close()


def test_a_new_webhook_target_gets_a_secret_made_and_shown_once(app, tmp_path):
    app.client.create_rule("r", pattern=TIMED_OUT, targets=["redis:x"])
    done = app.cli("rules", "update", "r", "--target", "webhook:http://127.0.0.1:9/new")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Updated rule r: matching events go to webhook:")
    assert "Webhook signing secret (shown once" in done.stdout
    [target] = app.client.get_rule("r").targets
    assert target.has_secret


def test_what_is_not_given_stays(app, tmp_path):
    app.client.create_rule(
        "r",
        pattern=TIMED_OUT,
        targets=[{"target": "webhook:http://127.0.0.1:9/hook", "secret": SECRET}],
        description="before",
    )
    before = app.client.get_rule("r")
    pattern = tmp_path / "p.json"
    pattern.write_text(json.dumps({**TIMED_OUT, "detail": {"status": ["Failed"]}}))
    done = app.cli("rules", "update", "r", "--pattern-file", str(pattern))
    assert done.returncode == 0, done.stderr
    after = app.client.get_rule("r")
    assert after.pattern["detail"] == {"status": ["Failed"]}
    assert (after.targets, after.description, after.enabled) == (
        before.targets,
        "before",
        True,
    )
    assert after.updated_at > before.updated_at and after.created_at == before.created_at


def test_a_detail_type_fleetrun_never_emits_is_kept_with_a_warning(app, tmp_path):
    app.client.create_rule("r", pattern=TIMED_OUT, targets=["redis:x"])
    pattern = tmp_path / "p.json"
    pattern.write_text(json.dumps({**TIMED_OUT, "detail-type": ["Invocation Status Change"]}))
    done = app.cli("rules", "update", "r", "--pattern-file", str(pattern))
    assert done.returncode == 0, done.stderr
    assert "Warning: The pattern names the detail-type 'Invocation Status Change'" in done.stderr
    assert app.client.get_rule("r").warnings


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"pattern": {"detail": {"status": "Failed"}}}, "pattern"),
        ({"targets": [{"target": "ftp:somewhere"}]}, "unknown scheme"),
        ({"targets": [{"target": "webhook:http://127.0.0.1:9/other"}]}, "needs a signing secret"),
        ({"targets": []}, "targets"),
    ],
)
def test_a_bad_update_is_refused_in_one_sentence_and_changes_nothing(app, body, phrase):
    app.client.create_rule("r", pattern=TIMED_OUT, targets=["redis:x"])
    before = app.client.get_rule("r")
    headers = {"authorization": f"Bearer {app.token}"}
    response = app.http.patch("/v1/rules/r", json=body, headers=headers)
    assert response.status_code == 400, response.text  # this server's "not valid"
    message = response.json()["error"]["message"]
    assert phrase in message and message.endswith(".") and "\n" not in message
    assert app.client.get_rule("r") == before


def test_an_unknown_rule_is_a_404_in_one_sentence(app):
    with pytest.raises(NotFoundError, match=r"^No rule 'nope' exists"):
        app.client.update_rule("nope", description="x")
    done = app.cli("rules", "update", "nope", "--description", "x")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "No rule 'nope' exists" in done.stderr
    nothing = app.cli("rules", "update", "nope")
    assert nothing.returncode == 2 and "Nothing to change in rule nope" in nothing.stderr


def test_update_is_decided_by_policy_and_audited(app):
    app.client.create_rule("r", pattern=TIMED_OUT, targets=["redis:x"])
    app.client.create_principal("reader")
    app.client.attach("reader", role="Reader")
    reader_token = app.client.create_token("reader").token
    with pytest.raises(AccessDeniedError, match=r"^reader may not"):
        app.client_for(reader_token).update_rule("r", description="mine now")
    refused = app.cli("rules", "update", "r", "--description", "mine", token=reader_token)
    assert refused.returncode == 3 and "reader may not" in refused.stderr
    app.client.create_principal("editor")
    app.client.create_policy(
        "edit-r",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "fleetrun:UpdateRule",
                    "Resource": "frn:fleetrun:rule/r",
                }
            ],
        },
    )
    app.client.attach("editor", policy="edit-r")
    editor = app.client_for(app.client.create_token("editor").token)
    assert editor.update_rule("r", description="edited").description == "edited"
    assert app.client.get_rule("r").description == "edited"
    decisions = [
        (r.principal, r.decision)
        for r in app.client.list_audit_records(action="fleetrun:UpdateRule")
        if r.kind == "decision" or r.decision
    ]
    assert ("reader", "deny") in decisions and ("editor", "allow") in decisions
