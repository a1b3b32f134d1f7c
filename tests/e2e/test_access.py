"""Access control where real agents run what a policy allows: the allowed nodes run
the command, a reader reads their output, a cancel reaches running work per node, and
secrets reach only the allowed nodes. (The decisions themselves, per-node AccessDenied
at send time, filtered reads, roles and simulation are in tests/api/test_access.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import AccessDeniedError
from fleetrun.sdk import Client
from tests.api.test_access import ANY_DOCUMENT, GROUPS_AND_COMMANDS, WEB_NODES_ONLY
from tests.harness import wait_for

READ = {"Effect": "Allow", "Action": ["fleetrun:Get*", "fleetrun:List*"], "Resource": "*"}


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


_CLIENTS: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client_for(fleet, token):
    client = Client(fleet.server.url, token)
    _CLIENTS.append(client)
    return client


def principal(fleet, name, *documents, roles=()):
    """A new principal with these policies and roles, and a client with its token."""
    admin = fleet.client
    admin.create_principal(name)
    for index, document in enumerate(documents):
        admin.create_policy(f"{name}-{index}", document)
        admin.attach(name, policy=f"{name}-{index}")
    for role in roles:
        admin.attach(name, role=role)
    return client_for(fleet, admin.create_token(name).token)


def nodes_by_role(fleet):
    return {n.name: n for n in fleet.client.list_nodes()}


def test_a_command_to_nodes_the_caller_may_not_touch_runs_on_the_others(shared_fleet):
    """SSM's tag-conditioned policy: the web nodes run it, the db node is AccessDenied,
    and the command succeeds on what it was allowed to touch."""
    client = principal(
        shared_fleet,
        "web-operator",
        doc(
            READ,
            {
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "frn:fleetrun:document/*",
            },
            {
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "frn:fleetrun:node/*",
                "Condition": {"StringLike": {"fleetrun:ResourceTag/role": ["web"]}},
            },
        ),
    )
    command = client.send_command(script="echo ran", all_nodes=True)
    done = client.wait(command.id, timeout_s=60)
    invocations = {i.node_name: i for i in client.list_invocations(command.id, details=True)}
    assert {n: i.status for n, i in invocations.items()} == {
        "web01": "Success",
        "web02": "Success",
        "db03": "AccessDenied",
    }
    assert invocations["web01"].stdout == "ran\n"
    assert done.status == "Success" and done.counts == {"Success": 2, "AccessDenied": 1}


def test_a_command_its_condition_keys_allow_runs(shared_fleet):
    client = principal(
        shared_fleet,
        "uptime-only",
        doc(
            READ,
            {
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "*",
                "Condition": {
                    "StringLike": {"fleetrun:Parameter/commands": ["uptime*"]},
                    "IpAddress": {"fleetrun:SourceIp": "127.0.0.0/8"},
                    "DateGreaterThan": {"fleetrun:CurrentTime": "2020-01-01T00:00:00Z"},
                    "StringEquals": {"fleetrun:PrincipalName": "uptime-only"},
                },
            },
        ),
    )
    command = client.send_command(script="uptime", tags={"role": "db"})
    assert client.wait(command.id, timeout_s=30).status == "Success"


def test_a_reader_reads_the_output_of_the_nodes_it_may_read(shared_fleet):
    nodes = nodes_by_role(shared_fleet)
    client = principal(
        shared_fleet,
        "db-reader",
        doc(
            {
                "Effect": "Allow",
                "Action": ["fleetrun:ListCommandInvocations", "fleetrun:GetCommandInvocation"],
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
            },
        ),
    )
    command = shared_fleet.client.send_command(script="echo mixed", all_nodes=True)
    shared_fleet.client.wait(command.id, timeout_s=30)
    assert client.get_invocation(command.id, nodes["db03"].id).stdout == "mixed\n"
    with pytest.raises(AccessDeniedError):
        client.get_output(command.id, nodes["web02"].id)


def test_an_operators_command_runs(shared_fleet):
    operator = principal(shared_fleet, "o1", roles=["Operator"])
    command = operator.send_command(script="true", tags={"role": "db"})
    assert operator.wait(command.id, timeout_s=30).status == "Success"


def test_a_group_command_runs_on_the_members_the_caller_may_touch(shared_fleet):
    admin = shared_fleet.client
    everyone = [n.id for n in admin.list_nodes()]
    admin.create_group("everyone", node_ids=everyone)
    client = principal(
        shared_fleet, "group-user", doc(WEB_NODES_ONLY, ANY_DOCUMENT, GROUPS_AND_COMMANDS)
    )
    command = client.send_command(script="true", group="everyone")
    done = client.wait(command.id, timeout_s=60)
    assert done.counts == {"Success": 2, "AccessDenied": 1}


def test_cancel_is_decided_per_node(shared_fleet):
    admin = shared_fleet.client
    nodes = nodes_by_role(shared_fleet)
    client = principal(
        shared_fleet, "canceller", doc(WEB_NODES_ONLY, ANY_DOCUMENT, GROUPS_AND_COMMANDS)
    )
    command = admin.send_command(script="sleep 30", all_nodes=True, max_concurrency="100%")
    wait_for(
        lambda: admin.get_command(command.id).counts.get("InProgress") == 3,
        timeout_s=60,
        what="all three running",
    )
    with pytest.raises(AccessDeniedError, match="CancelCommand on frn:fleetrun:node/"):
        client.cancel_command(command.id, node_ids=[nodes["db03"].id])
    client.cancel_command(command.id)  # the web nodes only
    wait_for(
        lambda: (
            {
                i.node_name: i.status
                for i in admin.list_invocations(command.id)
                if i.status not in ("Cancelling", "InProgress")
            }.keys()
            >= {"web01", "web02"}
        ),
        timeout_s=60,
        what="the web nodes cancelled",
    )
    states = {i.node_name: i.status for i in admin.list_invocations(command.id)}
    assert states["web01"] == states["web02"] == "Cancelled"
    assert states["db03"] == "InProgress"
    admin.cancel_command(command.id)
    assert admin.wait(command.id, timeout_s=60).status == "Cancelled"


def test_secrets_go_only_to_the_nodes_the_sender_may_act_on(shared_fleet):
    client = principal(
        shared_fleet,
        "secret-sender",
        doc(READ, WEB_NODES_ONLY, ANY_DOCUMENT, {**READ, "Action": "fleetrun:ListNodes"}),
    )
    command = client.send_command(
        script='printf "%s" "$token" | wc -c',
        all_nodes=True,
        secret_parameters={"token": "s3cret-value"},
    )
    done = client.wait(command.id, timeout_s=60)
    assert done.counts == {"Success": 2, "AccessDenied": 1}
    outputs = {i.node_name: i.stdout for i in client.list_invocations(command.id, details=True)}
    assert outputs["web01"].strip() == outputs["web02"].strip() == "12"
    assert outputs["db03"] == ""
