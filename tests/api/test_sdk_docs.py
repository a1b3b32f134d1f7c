"""The examples of docs/sdk.md, one resource after another, against the real app: the
names, arguments and fields the guide shows are the SDK's. (Sending and waiting, which
need a running agent, are the e2e tests' subject.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleetrun.schemas.runcommands import RunCommandParameter, RunCommandPut, RunCommandSource
from fleetrun.sdk import AsyncClient
from tests.inprocess import BASE_URL

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_sdk_guide_examples_work_as_written(app):
    client = app.client
    activation = client.create_activation(tags={"env": "prod"}, registration_limit=10)
    assert activation.code and activation.id in [a.id for a in client.list_activations()]
    [enrolled] = app.enrol(1)
    node = client.get_node(enrolled.node_id)
    assert client.tag_node(node.id, set={"role": "web"}).tags["role"] == "web"
    assert "role" not in client.tag_node(node.id, remove=["role"]).tags
    client.tag_node(node.id, set={"role": "web"})

    content = (DOCS / "documents.md").read_text().split("```yaml\n")[1].split("```")[0]
    client.create_document("restart-service", content)
    client.update_document("restart-service", content.replace("Restart a", "Restart the"))
    client.set_default_version("restart-service", 2)
    [doc] = [d for d in client.list_documents() if d.name == "restart-service"]
    assert doc.default_version == "2"

    client.create_group("web", tags={"role": "web"})
    client.update_group("web", tags={"role": ["web", "edge"]})
    assert client.get_group("web").name == "web"

    client.put_run_command(node.id, "ntp", script="timedatectl set-ntp true")
    client.put_group_run_command("web", "time-sync", script="timedatectl set-ntp true")
    assert [run.reason for run in client.list_run_command_runs(node.id, "ntp")] == ["Create"]
    body = RunCommandPut(
        source=RunCommandSource(documentName="RunShellScript"),
        parameters=[RunCommandParameter(name="commands", value="systemctl reload nginx")],
        timeoutInSeconds=120,
    )
    assert client.put_group_run_command("web", "reload", body).timeoutInSeconds == 120

    client.create_principal("ci", kind="service")
    client.create_policy(
        "deploy-web",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "fleetrun:SendCommand",
                    "Resource": "frn:fleetrun:document/*",
                },
                {
                    "Effect": "Allow",
                    "Action": "fleetrun:SendCommand",
                    "Resource": "frn:fleetrun:node/*",
                    "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
                },
            ],
        },
    )
    client.attach("ci", policy="deploy-web")
    assert client.create_token("ci", expires_in_s=30 * 86400).token
    resource = f"frn:fleetrun:node/{node.id}"
    context = {"fleetrun:ResourceTag/role": "web"}
    assert client.simulate("ci", "fleetrun:SendCommand", resource, context).decision == "allow"
    client.create_role("deployers", ["deploy-web"], description="CI that deploys the web tier")
    client.attach("ci", role="deployers")
    client.detach("ci", policy="deploy-web")
    assert client.simulate("ci", "fleetrun:SendCommand", resource, context).decision == "allow"
    assert [t.principal for t in client.list_tokens("ci")] == ["ci"]

    since = datetime.now(UTC) - timedelta(hours=1)
    records = client.list_audit_records(since=since, principal="admin")
    assert records and all(r.at and r.action and r.decision for r in records)
    assert client.verify_audit_log().ok
    assert any(True for _ in client.export_audit_records(since=since))

    assert all(e.seq > 0 for e in client.list_events(limit=20))
    pattern = {
        "detail-type": ["Command Invocation Status-change Notification"],
        "detail": {"status": ["Failed"]},
    }
    secret = "s" * 32
    client.create_rule(
        "on-failure",
        pattern=pattern,
        targets=[{"target": "webhook:https://hooks.example.com/fleet", "secret": secret}],
    )
    rule = client.update_rule(
        "on-failure",
        pattern={**pattern, "detail": {"status": ["Failed", "TimedOut"]}},
        description="failed or timed out",
    )
    assert rule.targets[0].has_secret and rule.description == "failed or timed out"
    assert client.list_rule_deliveries("on-failure", state="dead") == []
    assert client.redrive_rule("on-failure").redriven == 0
    client.create_channel("ops", target="email:ops@example.com")
    assert client.list_channel_deliveries("ops") == []

    client.delete_group("web")
    client.delete_document("restart-service")
    client.delete_node(node.id)


async def test_the_async_examples_work_as_written(app):
    """The AsyncClient section: gathered sends, async iteration over invocations, the
    audit log page by page, and the export (waiting needs an agent: e2e's subject)."""
    app.enrol(2, tags={"role": "web"})
    app.client.create_group("web", tags={"role": "web"})
    app.client.create_group("api", tags={"role": "web"})
    async with app.async_http() as http, AsyncClient(BASE_URL, app.token, http=http) as client:
        sent = await asyncio.gather(
            *(client.send_command(script="systemctl restart app", group=g) for g in ["web", "api"])
        )
        for command in sent:
            invocations = [inv async for inv in client.iter_invocations(command.id)]
            assert len(invocations) == 2 and all(inv.node_name for inv in invocations)
        records = [r async for r in client.iter_audit_records(principal="admin", page_size=2)]
        assert len(records) > 2 and all(r.principal == "admin" for r in records)
        assert [o async for o in client.export_audit_records()][-1]["head"]
