"""Every kind of target, with a real receiver: e-mail through a real SMTP server,
NATS and Redis (the servers on this machine), a command sent on behalf of a principal
when a node registers, and SNS-style notifications of a command through channels."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading

import pytest

from tests.e2e.receivers import SmtpReceiver, WebhookReceiver
from tests.e2e.test_cli import cli
from tests.harness import Fleet, wait_for

SECRET = "a-webhook-secret-of-some-length"
SUCCESS = {
    "source": ["fleetrun"],
    "detail-type": ["Command Status-change Notification"],
    "detail": {"status": ["Success"]},
}


def _reachable(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _run(fleet, agent, script="true"):
    command = fleet.client.send_command(script=script, node_ids=[agent.node_id])
    fleet.client.wait(command.id, timeout_s=60)
    return command


def test_email_targets_send_a_readable_mail_with_the_event_attached(tmp_path):
    password = "smtp-password-" + os.urandom(4).hex()
    with SmtpReceiver(user="fleet", password=password) as smtp:
        fleet = Fleet(
            tmp_path,
            env={"FLEETRUN_SMTP_PASSWORD": password},
            extra_args=[
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                str(smtp.port),
                "--smtp-security",
                "none",
                "--smtp-user",
                "fleet",
                "--smtp-from",
                "fleetrun@fleet.example",
            ],
        ).start()
        try:
            agent = fleet.add_agent()
            fleet.client.create_rule("mail", pattern=SUCCESS, targets=["email:ops@example.com"])
            command = _run(fleet, agent)
            wait_for(lambda: smtp.messages, what="the mail")
            (mail,) = smtp.messages
            assert smtp.logins == [("fleet", password)]
            assert mail["To"] == "ops@example.com" and mail["From"] == "fleetrun@fleet.example"
            assert mail["Subject"] == (
                "[fleetrun] Command Status-change Notification: Success (RunShellScript)"
            )
            parts = list(mail.walk())
            body = next(p for p in parts if p.get_content_type() == "text/plain")
            text = body.get_payload(decode=True).decode()
            assert f"command-id: {command.id}" in text and "status: Success" in text
            attached = next(p for p in parts if p.get_filename() == "event.json")
            event = json.loads(attached.get_payload(decode=True))
            assert event["detail"]["command-id"] == command.id
            assert password not in fleet.server.log_path.read_text()
        finally:
            fleet.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_over_starttls_and_tls_verifies_the_smtp_servers_certificate(tmp_path, security):
    """The SMTP server's certificate is checked (name and chain): a private CA is given
    with --smtp-ca-file; without it the delivery is retried with a sentence saying so."""
    password = "smtp-password-" + os.urandom(4).hex()
    with SmtpReceiver(
        user="fleet", password=password, tls=security, tls_dir=tmp_path / "smtp"
    ) as smtp:
        base = ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port)]
        base += ["--smtp-security", security, "--smtp-user", "fleet"]
        env = {"FLEETRUN_SMTP_PASSWORD": password}
        untrusting = Fleet(tmp_path / "untrusting", env=env, extra_args=base).start()
        try:
            untrusting.client.create_rule(
                "mail",
                pattern={"source": ["fleetrun"], "detail-type": ["Node Registration"]},
                targets=["email:ops@example.com"],
            )
            untrusting.add_agent()
            (pending,) = wait_for(
                lambda: [
                    d
                    for d in untrusting.client.list_rule_deliveries("mail")
                    if d.last_error and "not trusted" in d.last_error
                ],
                what="a refused certificate",
            )
            assert "--smtp-ca-file" in pending.last_error and not smtp.messages
        finally:
            untrusting.close()
        trusting = Fleet(
            tmp_path / "trusting",
            env=env,
            extra_args=[*base, "--smtp-ca-file", str(smtp.ca_file)],
        ).start()
        try:
            trusting.client.create_rule("mail", pattern=SUCCESS, targets=["email:ops@example.com"])
            command = _run(trusting, trusting.add_agent())
            wait_for(lambda: smtp.messages, what="the mail over " + security)
            assert smtp.logins == [("fleet", password)]
            assert command.id in smtp.messages[0].get_body(("plain",)).get_content()
        finally:
            trusting.close()


@pytest.mark.skipif(not _reachable(4222), reason="no NATS server on 127.0.0.1:4222")
def test_nats_targets_publish_the_event(shared_fleet):
    import nats

    subject = "fleet.events." + os.urandom(4).hex()
    got: list[dict] = []
    ready = threading.Event()

    async def listen():
        client = await nats.connect("nats://127.0.0.1:4222")
        sub = await client.subscribe(subject)
        await client.flush()
        ready.set()
        try:
            message = await sub.next_msg(timeout=60)
            got.append(json.loads(message.data))
        finally:
            await client.close()

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    assert ready.wait(10)
    shared_fleet.client.create_rule("to-nats", pattern=SUCCESS, targets=[f"nats:{subject}"])
    try:
        command = _run(shared_fleet, shared_fleet.agents[0])
        listener.join(60)
        assert got and got[0]["detail"]["command-id"] == command.id
    finally:
        shared_fleet.client.delete_rule("to-nats")


@pytest.mark.skipif(not _reachable(6379), reason="no Redis server on 127.0.0.1:6379")
def test_redis_targets_publish_and_append_to_a_stream(shared_fleet):
    import redis

    key = "fleet-events-" + os.urandom(4).hex()
    r = redis.Redis(host="127.0.0.1", port=6379)
    pubsub = r.pubsub()
    pubsub.subscribe(key)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    shared_fleet.client.create_rule(
        "to-redis", pattern=SUCCESS, targets=[f"redis:{key}", f"redis-stream:{key}-stream"]
    )
    try:
        command = _run(shared_fleet, shared_fleet.agents[0])
        message = wait_for(lambda: pubsub.get_message(timeout=1), what="the published event")
        assert json.loads(message["data"])["detail"]["command-id"] == command.id
        entries = wait_for(lambda: r.xrange(f"{key}-stream"), what="the stream entry")
        assert json.loads(entries[0][1][b"event"])["detail"]["command-id"] == command.id
    finally:
        shared_fleet.client.delete_rule("to-redis")
        r.delete(f"{key}-stream")
        pubsub.close()
        r.close()


BOOTSTRAP = {
    "targets": [{"key": "NodeIds", "values": ["$.detail.node-id"]}],
    "parameters": {"commands": ["echo bootstrapped <$.detail.node-name>"]},
    "comment": "bootstrap",
}


def test_a_command_rule_bootstraps_a_freshly_registered_node(fleet):
    client = fleet.client
    client.create_principal("bootstrapper", kind="service")
    client.attach("bootstrapper", role="Operator")
    client.create_rule(
        "bootstrap",
        pattern={"source": ["fleetrun"], "detail-type": ["Node Registration"]},
        targets=[{"target": "command:RunShellScript", "input": BOOTSTRAP}],
        principal="bootstrapper",
    )
    agent = fleet.add_agent()
    (sent,) = wait_for(
        lambda: [d for d in client.list_rule_deliveries("bootstrap") if d.state == "delivered"],
        what="the rule to send its command",
    )
    command_id = sent.history[-1].detail.removeprefix("command ")
    command = client.wait(command_id, timeout_s=60)
    assert command.status == "Success" and command.principal == "bootstrapper"
    invocation = client.get_invocation(command_id, agent.node_id)
    assert f"bootstrapped {agent.name}" in invocation.steps[0].stdout


def test_a_command_rule_is_held_to_its_principals_policies(fleet):
    client = fleet.client
    client.create_principal("reader-only", kind="service")
    client.attach("reader-only", role="Reader")
    client.create_rule(
        "not-allowed",
        pattern={"source": ["fleetrun"], "detail-type": ["Node Registration"]},
        targets=[{"target": "command:RunShellScript", "input": BOOTSTRAP}],
        principal="reader-only",
    )
    fleet.add_agent()
    (dead,) = wait_for(
        lambda: client.list_rule_deliveries("not-allowed", state="dead"), what="the refusal"
    )
    assert "reader-only may not perform fleetrun:SendCommand" in dead.last_error
    assert dead.attempts == 1  # a refusal is not retried
    assert client.list_commands() == []


def test_channels_carry_sns_style_notifications_of_a_command(shared_fleet):
    client = shared_fleet.client
    web = [a.node_id for a in shared_fleet.agents[:2]]
    with WebhookReceiver(SECRET) as hook:
        made = cli(
            shared_fleet,
            "channels",
            "create",
            "ops-hook",
            "--target",
            f"webhook:{hook.url}",
            "--secret-env",
            "HOOK_SECRET",
            "--json",
            env={"HOOK_SECRET": SECRET},
        )
        assert made.returncode == 0, made.stderr
        assert "secret" not in json.loads(made.stdout)
        try:
            sent = cli(
                shared_fleet,
                "send",
                "--node",
                web[0],
                "--node",
                web[1],
                "--script",
                "true",
                "--notify",
                "ops-hook",
                "--notify-on",
                "Success,Failed",
                "--notify-type",
                "Invocation",
                "--wait",
            )
            assert sent.returncode == 0, sent.stderr
            messages = wait_for(
                lambda: len(hook.delivered()) >= 2 and [r.json for r in hook.delivered()],
                what="two invocation notifications",
            )
            assert sorted(m["NodeId"] for m in messages) == sorted(web)
            for message in messages:
                assert (
                    message["Status"] == "Success" and message["DocumentName"] == "RunShellScript"
                )
                assert {"EventTime", "CommandId", "RequestedDateTime", "OutputLocation"} <= set(
                    message
                )
            # Per command, every status that notifies: InProgress and Success, never Pending.
            command = client.send_command(
                script="true",
                node_ids=web[:1],
                notification={"channel": "ops-hook", "type": "Command"},
            )
            client.wait(command.id, timeout_s=60)
            ours = wait_for(
                lambda: (
                    [
                        r.json["Status"]
                        for r in hook.delivered()
                        if r.json["CommandId"] == command.id
                    ]
                    if len([r for r in hook.delivered() if r.json["CommandId"] == command.id]) >= 2
                    else None
                ),
                what="the command's notifications",
            )
            assert sorted(ours) == ["InProgress", "Success"]
            assert all(r.verified for r in hook.requests)
            listed = cli(shared_fleet, "channels", "list")
            assert "ops-hook" in listed.stdout and SECRET not in listed.stdout
        finally:
            assert cli(shared_fleet, "channels", "delete", "ops-hook").returncode == 0


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--notify", "no-such-channel"], "No channel 'no-such-channel'"),
        (["--notify", "bad-statuses", "--notify-on", "Pending"], "does not notify"),
        (["--notify-on", "Success"], "need --notify CHANNEL"),
    ],
)
def test_bad_notification_settings_are_refused_and_send_nothing(shared_fleet, args, phrase):
    shared_fleet.client.create_channel("bad-statuses", target="redis:x")
    try:
        before = len(shared_fleet.client.list_commands())
        done = cli(shared_fleet, "send", "--all", "--script", "true", *args)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert phrase in done.stderr
        assert len(shared_fleet.client.list_commands()) == before
    finally:
        shared_fleet.client.delete_channel("bad-statuses")


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        ({"name": "c", "target": "pigeon:home"}, 400, "unknown scheme"),
        ({"name": "c", "target": "command:RunShellScript"}, 400, "cannot be a channel"),
        ({"name": "c", "target": "webhook:https://h.example/x"}, 400, "needs a signing secret"),
        ({"name": "c", "target": "email:x@"}, 400, "not a valid e-mail address"),
        ({"name": "c", "target": "redis:x", "secret": "s" * 20}, 400, "takes no secret"),
        ({"name": "bad name!", "target": "redis:x"}, 400, "is not valid"),
    ],
)
def test_bad_channels_get_one_sentence_and_store_nothing(shared_fleet, body, status, phrase):
    import httpx

    headers = {"authorization": f"Bearer {shared_fleet.server.token}"}
    response = httpx.post(f"{shared_fleet.server.url}/v1/channels", json=body, headers=headers)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert phrase in message and message.endswith(".") and "\n" not in message
    assert shared_fleet.client.list_channels() == []


def test_a_template_that_finds_no_value_in_an_event_fails_with_a_sentence(fleet):
    """A rule taking two kinds of events, only one of which has the field: the other
    kind makes no command, and its delivery says why (once: it is not retried)."""
    client = fleet.client
    client.create_rule(
        "half-fits",
        pattern={"detail-type": ["Node Registration", "Command Status-change Notification"]},
        targets=[{"target": "command:RunShellScript", "input": BOOTSTRAP}],
        principal="admin",
    )
    fleet.add_agent()
    dead = wait_for(
        lambda: client.list_rule_deliveries("half-fits", state="dead"), what="a dead delivery"
    )
    assert "made no valid command from this event" in dead[0].last_error
    assert "targets.0.values.0" in dead[0].last_error and dead[0].attempts == 1
    assert "\n" not in dead[0].last_error


def test_naming_a_channel_takes_leave_to_notify_it(shared_fleet):
    """--notify is decided on the channel (fleetrun:NotifyChannel): a sender limited to
    one channel cannot send mail through another, and nothing is sent when refused."""
    from fleetrun.core.errors import AccessDeniedError
    from fleetrun.sdk import Client

    admin = shared_fleet.client
    admin.create_channel("team-a", target="redis:team-a")
    admin.create_channel("team-b", target="redis:team-b")
    admin.create_policy(
        "send-and-notify-a",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "fleetrun:SendCommand", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": "fleetrun:NotifyChannel",
                    "Resource": "frn:fleetrun:channel/team-a",
                },
                {"Effect": "Allow", "Action": "fleetrun:List*", "Resource": "*"},
            ],
        },
    )
    admin.create_principal("team-a-bot", kind="service")
    admin.attach("team-a-bot", policy="send-and-notify-a")
    token = admin.create_token("team-a-bot").token
    node = shared_fleet.agents[0].node_id
    try:
        with Client(shared_fleet.server.url, token) as bot:
            before = len(admin.list_commands())
            with pytest.raises(AccessDeniedError, match="NotifyChannel"):
                bot.send_command(script="true", node_ids=[node], notification={"channel": "team-b"})
            assert len(admin.list_commands()) == before
            sent = bot.send_command(
                script="true", node_ids=[node], notification={"channel": "team-a"}
            )
            assert sent.notification is not None and sent.notification.channel == "team-a"
    finally:
        admin.delete_channel("team-a")
        admin.delete_channel("team-b")
