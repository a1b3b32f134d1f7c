"""Rules over the API and the CLI, in process: bad rules and patterns refused whole in
one sentence, the rules commands, and webhook secrets never shown nor stored in clear.
(Deliveries to real receivers, retries and dead letters are in
tests/api/test_rule_deliveries.py; restarts and replicas in tests/e2e/test_rules.py.)"""

from __future__ import annotations

import json
import logging
import secrets

import pytest

from fleetrun.core.logs import JsonFormatter, TextFormatter
from tests.inprocess import App

SECRET = "a-webhook-secret-of-some-length"
SUCCESS = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["Success"]},
}


@pytest.mark.parametrize(
    ("targets", "extra", "phrase"),
    [
        ([{"target": "ftp:somewhere"}], {}, "unknown scheme"),
        ([{"target": "webhook:not a url", "secret": SECRET}], {}, "not a valid webhook"),
        ([{"target": "webhook:http://h.example/x"}], {}, "needs a signing secret"),
        ([{"target": "email:nobody"}], {}, "not a valid e-mail address"),
        ([{"target": "nats:bad subject"}], {}, "not a valid NATS subject"),
        (
            [
                {
                    "target": "command:RunShellScript",
                    "input": {
                        "targets": [{"key": "NodeIds", "values": ["$.detail.ping-status"]}],
                        "parameters": {"commands": ["true"]},
                    },
                }
            ],
            {"principal": "admin"},
            "has no detail field 'ping-status'",
        ),
        (
            [
                {
                    "target": "command:NoSuchDocument",
                    "input": {"targets": [{"key": "NodeIds", "values": ["$.detail.principal"]}]},
                }
            ],
            {"principal": "admin"},
            "No document",
        ),
        (
            [
                {
                    "target": "command:RunShellScript",
                    "input": {
                        "targets": [{"key": "tag:owner", "values": ["$.detail.principal"]}],
                        "parameters": {"commands": ["true"]},
                    },
                }
            ],
            {},
            "name the principal",
        ),
    ],
)
def test_bad_rules_get_one_sentence_a_400_and_store_nothing(app, targets, extra, phrase):
    headers = {"authorization": f"Bearer {app.token}"}
    body = {"name": "bad", "pattern": SUCCESS, "targets": targets, **extra}
    response = app.http.post("/v1/rules", json=body, headers=headers)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert phrase in message and message.endswith(".") and "\n" not in message
    assert [r.name for r in app.client.list_rules()] == []


def test_a_bad_pattern_is_refused_on_the_command_line(app, tmp_path):
    pattern = tmp_path / "p.json"
    pattern.write_text("[1, 2]")
    done = app.cli(
        "rules",
        "create",
        "x",
        "--pattern-file",
        str(pattern),
        "--target",
        "redis:events",
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "pattern" in done.stderr.lower()
    assert app.client.list_rules() == []


def test_rules_on_the_command_line(app, tmp_path):
    pattern = tmp_path / "p.json"
    pattern.write_text(json.dumps(SUCCESS))
    made = app.cli(
        "rules",
        "create",
        "cli-rule",
        "--pattern-file",
        str(pattern),
        "--target",
        "webhook:http://127.0.0.1:9/hook",
        "--target",
        "redis:fleet-events",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert len(created["secret"]) >= 16  # made on this machine, shown once
    assert [t["target"] for t in created["targets"]] == [
        "webhook:http://127.0.0.1:9/hook",
        "redis:fleet-events",
    ]
    try:
        listed = app.cli("rules", "list")
        assert listed.returncode == 0 and "cli-rule" in listed.stdout
        assert created["secret"] not in app.cli("rules", "show", "cli-rule").stdout
        off = app.cli("rules", "disable", "cli-rule", "--json")
        assert json.loads(off.stdout)["enabled"] is False
        on = app.cli("rules", "enable", "cli-rule", "--json")
        assert json.loads(on.stdout)["enabled"] is True
        shown = app.cli("rules", "deliveries", "cli-rule", "--json")
        assert shown.returncode == 0 and isinstance(json.loads(shown.stdout), list)
        missing = app.cli("rules", "show", "no-such-rule")
        assert missing.returncode != 0 and "No rule 'no-such-rule'" in missing.stderr
    finally:
        assert app.cli("rules", "delete", "cli-rule").returncode == 0
    assert app.client.list_rules() == []


@pytest.mark.parametrize(
    "pattern",
    [
        {"detail": {"status": "Failed"}},
        {"detail": {"exit-code": [{"numeric": [">", "x"]}]}},
        {"source": [{"no-such-operator": 1}]},
    ],
)
def test_an_invalid_pattern_is_refused_naming_the_fault(app, pattern):
    headers = {"authorization": f"Bearer {app.token}"}
    body = {"name": "bad-pattern", "pattern": pattern, "targets": [{"target": "redis:x"}]}
    response = app.http.post("/v1/rules", json=body, headers=headers)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.endswith(".") and "\n" not in message
    assert app.client.list_rules() == []
    stream = app.http.get(  # refused before any stream starts: a plain 400
        "/v1/events/stream", params={"pattern": json.dumps(pattern)}, headers=headers
    )
    assert stream.status_code == 400 and stream.json()["error"]["message"] == message


def test_a_pattern_naming_a_detail_type_never_emitted_is_kept_with_a_warning(app, tmp_path):
    """Valid but can never match: stored (EventBridge would store it too), and the answer,
    `rules show` and the CLI say so; a pattern that can match carries no warning."""
    never = {**SUCCESS, "detail-type": ["Invocation Status Change"]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(never))
    made = app.cli(
        "rules", "create", "never", "--pattern-file", str(path), "--target", "redis:x",
    )  # fmt: skip
    try:
        assert made.returncode == 0, made.stderr
        assert made.stdout.startswith("Created rule never")
        assert "Warning: The pattern names the detail-type 'Invocation Status Change', " in (
            made.stderr
        )
        assert "did you mean 'Command Invocation Status-change Notification'?" in made.stderr
        (warning,) = app.client.get_rule("never").warnings
        assert "'Invocation Status Change'" in warning
        shown = app.cli("rules", "show", "never", "--json")
        assert json.loads(shown.stdout)["warnings"] == [warning]
        assert "Warning:" in app.cli("rules", "show", "never").stderr
    finally:
        assert app.cli("rules", "delete", "never").returncode == 0
    path.write_text(json.dumps(SUCCESS))
    fine = app.cli("rules", "create", "fine", "--pattern-file", str(path), "--target", "redis:x")
    try:
        assert fine.returncode == 0 and "Warning" not in fine.stderr
        headers = {"authorization": f"Bearer {app.token}"}
        assert app.http.get("/v1/rules/fine", headers=headers).json()["warnings"] == []
    finally:
        assert app.cli("rules", "delete", "fine").returncode == 0


def test_webhook_secrets_are_never_returned_nor_stored_in_clear(tmp_path, caplog, capfd):
    """Not in any answer, not in the server's log (every record from its start, at
    every level, in either log format), not in the database's bytes."""
    caplog.set_level(logging.DEBUG)
    app = App(tmp_path).start()
    try:
        _secrets_stay_secret(app, caplog, capfd)
    finally:
        app.close()


def _secrets_stay_secret(app, caplog, capfd):
    secret = "never-shown-" + secrets.token_hex(8)
    rule = app.client.create_rule(
        "quiet",
        pattern=SUCCESS,
        targets=[{"target": "webhook:http://127.0.0.1:9/x", "secret": secret}],
    )
    channel = app.client.create_channel(
        "quiet", target="webhook:http://127.0.0.1:9/y", secret=secret
    )
    assert rule.targets[0].has_secret and channel.has_secret
    headers = {"authorization": f"Bearer {app.token}"}
    for path in ("/v1/rules", "/v1/rules/quiet", "/v1/channels", "/v1/channels/quiet"):
        assert secret not in app.http.get(path, headers=headers).text
    assert any(r.name.startswith("fleetrun.server") for r in caplog.records)  # it was heard
    for formatter in (TextFormatter(), JsonFormatter()):
        assert not [r for r in caplog.records if secret in formatter.format(r)]
    printed = capfd.readouterr()
    assert secret not in printed.out and secret not in printed.err
    assert secret.encode() not in _database_bytes(app)


def _database_bytes(app):
    if app.db.kind == "sqlite":
        data = b""
        for path in app.data_dir.glob("fleetrun.db*"):
            data += path.read_bytes()
        return data
    import psycopg

    url = app.db.url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT targets::text FROM rules UNION ALL SELECT secret FROM channels")
        return "".join(str(r[0]) for r in rows).encode()
