"""A group run command reaches only the nodes its author may touch: a node that joins the
group later (a tag group, or a group made again under the same name) is decided as the
author, at that moment, exactly as the author's PUT would be. A node the author may not
touch gets a run that ends Failed with an AccessDenied message and runs nothing; the
decision, allowed or denied, is in the audit log."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import AccessDeniedError
from fleetrun.sdk import Client
from tests.harness import Fleet, wait_for

# Run commands on any group, but on dev nodes only; groups may be made and deleted.
DEV_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["fleetrun:Get*", "fleetrun:List*"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["fleetrun:*RunCommand", "fleetrun:CreateGroup", "fleetrun:DeleteGroup"],
            "Resource": "frn:fleetrun:group/*",
        },
        {
            "Effect": "Allow",
            "Action": "fleetrun:*RunCommand",
            "Resource": "frn:fleetrun:node/*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "dev"}},
        },
    ],
}


@pytest.fixture(scope="module")
def group_fleet(tmp_path_factory):
    """One server for the module: each test enrolls nodes of its own and names its own
    groups; only the principal they act as is common, and its decisions are counted per
    node."""
    f = Fleet(tmp_path_factory.mktemp("groups")).start()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def dev_operator(group_fleet):
    admin = group_fleet.client
    admin.create_principal("devop")
    admin.create_policy("dev-only", DEV_ONLY)
    admin.attach("devop", policy="dev-only")
    with Client(group_fleet.server.url, admin.create_token("devop").token) as client:
        yield client


def _instance(client, group, name, node_id):
    found = client.get_group_run_command(group, name).instances
    return next((i for i in found if i.nodeId == node_id), None)


def _audited(client, node_id, decision):
    return [
        r
        for r in client.list_audit_records(principal="devop", limit=1000)
        if r.kind == "decision"
        and r.decision == decision
        and r.action == "fleetrun:PutGroupRunCommand"
        and r.resource == f"frn:fleetrun:node/{node_id}"
    ]


def test_a_node_that_joins_a_tag_group_is_decided_as_the_run_commands_author(
    group_fleet, dev_operator
):
    admin = group_fleet.client
    [dev] = group_fleet.add_agents(1, tags={"role": "web", "env": "dev"}, prefix="dev")
    admin.create_group("web", tags={"role": "web"})
    put = dev_operator.put_group_run_command("web", "hello", script="echo hi")
    assert [i.nodeId for i in put.instances] == [dev.node_id]
    wait_for(
        lambda: (
            _instance(dev_operator, "web", "hello", dev.node_id).instanceView.executionState
            == "Succeeded"
        ),
        what="the dev member to run it",
    )
    # A prod node joins the tag group: the author may not touch it, so it runs nothing.
    [prod] = group_fleet.add_agents(
        1, tags={"role": "web", "env": "prod"}, prefix="prod", start=False
    )
    denied = _instance(admin, "web", "hello", prod.node_id)
    assert denied is not None
    view = denied.instanceView
    assert view.executionState == "Failed"
    assert view.executionMessage.startswith("AccessDenied: ")
    assert "devop may not perform fleetrun:PutGroupRunCommand" in view.executionMessage
    assert denied.provisioningState == "Failed"
    assert admin.list_commands(node_id=prod.node_id) == []  # nothing was sent to it
    # The same decision a direct PUT on the node gets.
    with pytest.raises(AccessDeniedError, match="devop may not perform"):
        dev_operator.put_run_command(prod.node_id, "direct", script="echo hi")
    assert _audited(admin, prod.node_id, "deny")
    # Another dev node joins: decided as the author too, allowed, and audited.
    [dev2] = group_fleet.add_agents(
        1, tags={"role": "web", "env": "dev"}, prefix="devb", start=False
    )
    joined = _instance(admin, "web", "hello", dev2.node_id)
    assert joined is not None and joined.instanceView.executionState == "Pending"
    assert _audited(admin, dev2.node_id, "allow")
    # Someone allowed on every member puts the same body again: the denied member runs
    # it now (its run never started, so it is not "already run"); the others do not.
    again = admin.put_group_run_command("web", "hello", script="echo hi")
    generations = {i.nodeId: i.generation for i in again.instances}
    assert generations == {dev.node_id: 1, prod.node_id: 2, dev2.node_id: 1}
    assert _instance(admin, "web", "hello", prod.node_id).instanceView.executionState == "Pending"


def test_a_group_made_again_with_other_members_does_not_widen_its_run_commands(
    group_fleet, dev_operator
):
    admin = group_fleet.client
    [dev] = group_fleet.add_agents(1, tags={"env": "dev"}, prefix="dev", start=False)
    [prod] = group_fleet.add_agents(1, tags={"env": "prod"}, prefix="prod", start=False)
    dev_operator.create_group("pinned", node_ids=[dev.node_id])
    dev_operator.put_group_run_command("pinned", "job", script="echo hi")
    dev_operator.delete_group("pinned")
    dev_operator.create_group("pinned", node_ids=[prod.node_id])
    denied = _instance(admin, "pinned", "job", prod.node_id)
    assert denied is not None
    assert denied.instanceView.executionState == "Failed"
    assert denied.instanceView.executionMessage.startswith("AccessDenied: ")
    assert admin.list_commands(node_id=prod.node_id) == []
    assert _audited(admin, prod.node_id, "deny")
