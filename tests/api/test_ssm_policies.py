"""Policies written for AWS Systems Manager, attached unchanged, decide `fleetrun send`
and boto3's `send_command` alike: the three example policies of AWS's "Restricting Run
Command access based on tags" give AccessDenied on exactly the nodes AWS says they do,
through either; `fleetrun policy simulate` speaks SSM's actions and ARNs too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.ssmclient import ssm_client

POLICIES = Path(__file__).parent.parent / "policies"
DENIED = "AccessDenied"
SENT = {"Pending", "Delayed"}  # allowed, waiting for an agent that is not running here


def attach_seed(app, principal, *files):
    """A principal with these SSM policies attached verbatim, and its token."""
    admin = app.client
    admin.create_principal(principal)
    for file in files:
        name = Path(file).stem
        admin.create_policy(name, json.loads((POLICIES / file).read_text()))
        admin.attach(principal, policy=name)
    return admin.create_token(principal).token


def enrol(app, **nodes):
    """One node per name, with the tags given: name -> node id."""
    for name, tags in nodes.items():
        app.enrol(1, tags=tags, prefix=name)
    return {n.name.rstrip("0123456789"): n.id for n in app.client.list_nodes()}


def aws_key(app, principal):
    """An AWS access key of the principal (made by the administrator: the seed
    policies grant no fleetrun:CreateToken)."""
    created = app.client.create_token(principal, aws=True)
    return str(created.access_key_id), str(created.secret_access_key)


def send_all(app, token, *extra):
    result = app.cli("send", "--all", "--script", "uptime", "--json", *extra, token=token)
    assert result.exit_code == 0, result.stderr
    command = json.loads(result.stdout)
    return {i.node_id: i.status for i in app.client.list_invocations(command["id"])}


def test_the_finance_webservers_policy_denies_every_node_but_those_tagged_so(app):
    ids = enrol(
        app,
        web={"Finance": "WebServers"},
        near={"Finance": "WebServer"},  # the prose's spelling: not the policy's value
        other={"Team": "WebServers"},
        bare={},
    )
    token = attach_seed(app, "finance", "ssm-tag-finance-webservers.json")
    statuses = send_all(app, token)
    assert statuses[ids["web"]] in SENT
    assert {statuses[ids[n]] for n in ("near", "other", "bare")} == {DENIED}


def test_the_two_tags_policy_needs_both_tags_and_an_aws_document(app):
    ids = enrol(
        app,
        both={"tag_key1": "tag_value1", "tag_key2": "tag_value2"},
        one={"tag_key1": "tag_value1"},
        two={"tag_key2": "tag_value2"},
        wrong={"tag_key1": "tag_value2", "tag_key2": "tag_value1"},
        bare={},
    )
    token = attach_seed(app, "both", "ssm-tag-both-keys.json")
    statuses = send_all(app, token)  # RunShellScript: AWS-RunShellScript in SSM's words
    assert statuses[ids["both"]] in SENT
    assert {statuses[ids[n]] for n in ("one", "two", "wrong", "bare")} == {DENIED}
    # Its ssm:ListCommands lets it read its commands; nothing lets it cancel them.
    listed = app.cli("commands", "list", "--json", token=token)
    assert listed.exit_code == 0, listed.stderr
    # A document of fleetrun's own is not an AWS-* document: the whole request is refused.
    patch = {
        "schemaVersion": "2.2",
        "mainSteps": [
            {"action": "runShellScript", "name": "p", "inputs": {"runCommand": ["true"]}}
        ],
    }
    app.client.create_document("Patch", json.dumps(patch))
    refused = app.cli("send", "--all", "--document", "Patch", token=token)
    assert refused.exit_code != 0
    assert "may not perform fleetrun:SendCommand on frn:fleetrun:document/Patch" in refused.stderr


def test_the_either_tag_policy_allows_each_group_and_both(app):
    ids = enrol(
        app,
        first={"tag_key1": "tag_value1"},
        second={"tag_key2": "tag_value2"},
        both={"tag_key1": "tag_value1", "tag_key2": "tag_value2"},
        neither={"tag_key1": "other"},
    )
    token = attach_seed(app, "either", "ssm-tag-either-key.json")
    statuses = send_all(app, token)
    assert {statuses[ids[n]] for n in ("first", "second", "both")} <= SENT
    assert statuses[ids["neither"]] == DENIED


def test_ssm_and_fleetrun_policies_mix_and_an_explicit_deny_wins(app):
    ids = enrol(app, web={"Finance": "WebServers", "env": "prod"}, dev={"Finance": "WebServers"})
    token = attach_seed(app, "mixed", "ssm-tag-finance-webservers.json")
    app.client.create_policy(
        "no-prod",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "fleetrun:SendCommand",
                    "Resource": "frn:fleetrun:node/*",
                    "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "prod"}},
                }
            ],
        },
    )
    app.client.attach("mixed", policy="no-prod")
    statuses = send_all(app, token)
    assert statuses == {ids["web"]: DENIED, ids["dev"]: statuses[ids["dev"]]}
    assert statuses[ids["dev"]] in SENT


@pytest.mark.parametrize(
    ("action", "resource", "node", "decision"),
    [
        ("ssm:SendCommand", "arn:aws:ec2:us-east-2:123456789012:instance/{id}", "web", "allow"),
        (
            "ssm:SendCommand",
            "arn:aws:ssm:eu-west-1:123456789012:managed-instance/{id}",
            "web",
            "allow",
        ),
        ("ssm:SendCommand", "arn:aws:ec2:us-east-2:123456789012:instance/{id}", "bare", "deny"),
        ("fleetrun:SendCommand", "frn:fleetrun:node/{id}", "bare", "deny"),
        ("ssm:SendCommand", "arn:aws:ssm:us-east-2::document/AWS-RunShellScript", None, "allow"),
        ("ssm:CancelCommand", "*", None, "deny"),
    ],
)
def test_simulate_speaks_ssm(app, action, resource, node, decision):
    ids = enrol(app, web={"Finance": "WebServers"}, bare={})
    attach_seed(app, "finance", "ssm-tag-finance-webservers.json")
    named = resource.format(id=ids[node]) if node else resource
    result = app.cli(
        "policy",
        "simulate",
        "--principal",
        "finance",
        "--action",
        action,
        "--resource",
        named,
        "--json",
    )
    assert json.loads(result.stdout)["decision"] == decision
    assert result.exit_code == (0 if decision == "allow" else 1)
    if node:  # decided with the node's own tags, however the node was named
        tags = {"web": {"Finance": "WebServers"}, "bare": {}}[node]
        assert json.loads(result.stdout)["node_tags"] == tags


def test_simulate_offline_with_the_seed_file_and_with_no_policy_at_all(app):
    seed = str(POLICIES / "ssm-tag-finance-webservers.json")
    allowed = app.cli(
        "policy",
        "simulate",
        "--policy-file",
        seed,
        "--action",
        "fleetrun:SendCommand",
        "--resource",
        "frn:fleetrun:document/RunShellScript",
    )
    assert allowed.exit_code == 0 and allowed.stdout.startswith("allow")
    nothing = app.cli("policy", "simulate", "--action", "ssm:SendCommand", "--json")
    assert nothing.exit_code == 1, nothing.stderr
    assert json.loads(nothing.stdout) == {"decision": "deny", "matched_statements": []}
    text = app.cli("policy", "simulate", "--action", "ssm:SendCommand")
    assert "No statement allows ssm:SendCommand" in text.stdout


# seed -> (nodes and their tags, the nodes it lets one send to)
SEEDS = {
    "ssm-tag-finance-webservers.json": (
        {
            "web": {"Finance": "WebServers"},
            "near": {"Finance": "WebServer"},
            "other": {"Team": "WebServers"},
            "bare": {},
        },
        {"web"},
    ),
    "ssm-tag-both-keys.json": (
        {
            "both": {"tag_key1": "tag_value1", "tag_key2": "tag_value2"},
            "one": {"tag_key1": "tag_value1"},
            "two": {"tag_key2": "tag_value2"},
            "wrong": {"tag_key1": "tag_value2", "tag_key2": "tag_value1"},
            "bare": {},
        },
        {"both"},
    ),
    "ssm-tag-either-key.json": (
        {
            "first": {"tag_key1": "tag_value1"},
            "second": {"tag_key2": "tag_value2"},
            "both": {"tag_key1": "tag_value1", "tag_key2": "tag_value2"},
            "neither": {"tag_key1": "other"},
        },
        {"first", "second", "both"},
    ),
}


@pytest.mark.parametrize("seed", list(SEEDS))
def test_boto3_send_command_gets_the_same_access_denied_nodes_as_fleetrun_send(app, seed):
    nodes, allowed = SEEDS[seed]
    ids = enrol(app, **nodes)
    token = attach_seed(app, "seeded", seed)
    ssm = ssm_client(app, aws_key(app, "seeded"))
    sent = ssm.send_command(
        InstanceIds=sorted(ids.values()),
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["uptime"]},
    )["Command"]
    assert sent["TargetCount"] == len(nodes)
    admin = ssm_client(app)
    answered = admin.list_command_invocations(CommandId=sent["CommandId"])
    by_boto3 = {
        i["InstanceId"]: (i["Status"], i["StatusDetails"]) for i in answered["CommandInvocations"]
    }
    by_send = send_all(app, token)
    denied = {ids[n] for n in nodes if n not in allowed}
    assert {n for n, (_, d) in by_boto3.items() if d == "Access Denied"} == denied
    assert {n for n, s in by_send.items() if s == DENIED} == denied
    assert {by_boto3[n] for n in denied} == {("Failed", "Access Denied")}
    assert {by_boto3[ids[n]][0] for n in allowed} <= SENT
    assert {by_send[ids[n]] for n in allowed} <= SENT
    # the same as the native view of the command boto3 sent
    native = {i.node_id: i.status for i in app.client.list_invocations(sent["CommandId"])}
    assert {n for n, s in native.items() if s == DENIED} == denied


def test_a_document_the_seed_does_not_allow_answers_access_denied_exception(app):
    """Only AWS-* documents (the built-ins, account-less ARNs): one of your own is
    refused whole, as SSM refuses it, and nothing is created; every built-in is AWS-*."""
    ids = enrol(app, both={"tag_key1": "tag_value1", "tag_key2": "tag_value2"})
    attach_seed(app, "both", "ssm-tag-both-keys.json")
    patch = {
        "schemaVersion": "2.2",
        "mainSteps": [
            {"action": "aws:runShellScript", "name": "p", "inputs": {"runCommand": ["true"]}}
        ],
    }
    admin = ssm_client(app)
    admin.create_document(Name="Patch", Content=json.dumps(patch))
    ssm = ssm_client(app, aws_key(app, "both"))
    with pytest.raises(ClientError) as refused:
        ssm.send_command(InstanceIds=[ids["both"]], DocumentName="Patch")
    error = refused.value.response
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "fleetrun:SendCommand on frn:fleetrun:document/Patch" in error["Error"]["Message"]
    assert isinstance(refused.value, ssm.exceptions.AccessDeniedException)
    assert list(app.client.list_commands()) == []
    # its ssm:ListCommands reads the (empty) list; AWS-RunPythonScript is an AWS-* document
    assert ssm.list_commands()["Commands"] == []
    sent = ssm.send_command(
        InstanceIds=[ids["both"]],
        DocumentName="AWS-RunPythonScript",
        Parameters={"commands": ["print(1)"]},
    )["Command"]
    invocations = ssm.list_command_invocations(CommandId=sent["CommandId"])
    assert [i["Status"] for i in invocations["CommandInvocations"]] in (["Pending"], ["Delayed"])
