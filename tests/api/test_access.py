"""Access control, in process: principals and tokens, policies and roles, per-node
AccessDenied decided at send time, filtered reads, simulation. (What an agent must run
under a policy is in tests/e2e/test_access.py.)"""

from __future__ import annotations

import json

import pytest

from fleetrun.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from tests.harness import wait_for

READ = {"Effect": "Allow", "Action": ["fleetrun:Get*", "fleetrun:List*"], "Resource": "*"}
WAITING = {"Pending", "Delayed"}  # created for delivery; no agent here to take it


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def principal(app, name, *documents, roles=()):
    """A new principal with these policies and roles, and a client with its token."""
    admin = app.client
    admin.create_principal(name)
    for index, document in enumerate(documents):
        admin.create_policy(f"{name}-{index}", document)
        admin.attach(name, policy=f"{name}-{index}")
    for role in roles:
        admin.attach(name, role=role)
    return app.client_for(admin.create_token(name).token)


def three_nodes(app):
    """web01, web02 (role=web) and db03 (role=db), as the e2e shared fleet has them."""
    app.enrol(2, tags={"env": "test", "role": "web"}, prefix="web")
    app.enrol(1, tags={"env": "test", "role": "db"}, prefix="db")
    return {n.name: n for n in app.client.list_nodes()}


def test_the_admin_token_belongs_to_the_builtin_admin_principal(app):
    me = app.client.whoami()
    assert me.principal == "admin"
    assert [(a.kind, a.name) for a in me.attached] == [("role", "Administrator")]
    with pytest.raises(ConflictError, match="built-in administrator"):
        app.client.delete_principal("admin")
    with pytest.raises(ConflictError, match="keeps the Administrator role"):
        app.client.detach("admin", role="Administrator")


def test_a_new_principal_may_do_nothing_until_granted_and_changes_count_at_once(app):
    three_nodes(app)
    admin = app.client
    client = principal(app, "newcomer")
    # The token authenticates (a 403, not a 401) but nothing is allowed yet, not even
    # asking who it is.
    with pytest.raises(
        AccessDeniedError, match="newcomer may not perform fleetrun:GetCallerIdentity"
    ):
        client.whoami()
    with pytest.raises(AccessDeniedError, match="newcomer may not perform fleetrun:ListNodes"):
        client.list_nodes()
    admin.attach("newcomer", role="Reader")
    assert len(client.list_nodes()) == 3  # the very next request
    admin.detach("newcomer", role="Reader")
    with pytest.raises(AccessDeniedError):
        client.list_nodes()


def test_tokens_are_shown_once_stored_as_hashes_expire_and_revoke(app):
    admin = app.client
    admin.create_principal("tokened")
    admin.attach("tokened", role="Reader")
    created = admin.create_token("tokened", description="ci", expires_in_s=3600)
    assert created.token.startswith("frt_") and created.expires_at is not None
    listed = {t.id: t for t in admin.list_tokens("tokened")}
    assert created.id in listed and "token" not in listed[created.id].model_dump()
    assert listed[created.id].last_used_at is None
    client = app.client_for(created.token)
    assert client.whoami().principal == "tokened"
    wait_for(
        lambda: {t.id: t for t in admin.list_tokens("tokened")}[created.id].last_used_at,
        timeout_s=10,
        what="the token's last use to be recorded",
    )
    admin.revoke_token(created.id)
    with pytest.raises(AuthenticationError):
        client.whoami()
    assert not {t.id: t for t in admin.list_tokens("tokened")}[created.id].active
    short = admin.create_token("tokened", expires_in_s=1)
    wait_for(lambda: _status(app, short.token) == 401, timeout_s=30, what="the token to expire")
    with pytest.raises(NotFoundError, match="No principal 'ghost'"):
        admin.create_token("ghost")


def _status(app, token):
    return app.http.get("/v1/whoami", headers={"authorization": f"Bearer {token}"}).status_code


def test_deleting_a_principal_ends_its_tokens(app):
    client = principal(app, "leaver", roles=["Reader"])
    assert client.whoami().principal == "leaver"
    app.client.delete_principal("leaver")
    with pytest.raises(AuthenticationError):
        client.whoami()
    assert "leaver" not in {p.name for p in app.client.list_principals()}


def test_a_command_to_nodes_the_caller_may_not_touch_is_access_denied_there_at_send_time(app):
    """SSM's tag-conditioned policy: the document is allowed as such, each node only
    with role=web; the db node gets an invocation in AccessDenied, visible to the caller,
    and the decision is in the audit log. The web nodes' invocations wait for delivery
    (that they then run is tests/e2e/test_access.py)."""
    three_nodes(app)
    client = principal(
        app,
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
    assert command.target_count == 3
    invocations = {i.node_name: i for i in client.list_invocations(command.id, details=True)}
    assert invocations["db03"].status == "AccessDenied"
    assert {invocations["web01"].status, invocations["web02"].status} <= WAITING
    assert invocations["db03"].status_detail == "AccessDenied"
    assert invocations["db03"].stdout == "" and invocations["db03"].exit_code is None
    assert client.get_command(command.id).counts["AccessDenied"] == 1
    db_node = invocations["db03"].node_id
    denials = app.client.list_audit_records(principal="web-operator", limit=50)
    assert any(
        r.kind == "decision"
        and r.decision == "deny"
        and r.resource == f"frn:fleetrun:node/{db_node}"
        and r.action == "fleetrun:SendCommand"
        for r in denials
    )


def test_a_command_nowhere_allowed_fails_with_every_node_access_denied(app):
    three_nodes(app)
    client = principal(
        app,
        "db-only",
        doc(
            READ,
            {
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
            },
            {
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "frn:fleetrun:document/RunShellScript",
            },
        ),
    )
    command = client.send_command(script="true", tags={"role": "web"})
    done = client.wait(command.id, timeout_s=30)
    assert done.status == "Failed" and done.status_detail == "AccessDenied"
    assert done.counts == {"AccessDenied": 2}


def test_a_denied_document_refuses_the_whole_request_and_stores_nothing(app):
    three_nodes(app)
    client = principal(
        app,
        "no-shell",
        doc(
            READ,
            {"Effect": "Allow", "Action": "fleetrun:SendCommand", "Resource": "*"},
            {
                "Sid": "NoShell",
                "Effect": "Deny",
                "Action": "fleetrun:SendCommand",
                "Resource": "frn:fleetrun:document/RunShellScript",
            },
        ),
    )
    app.client.send_command(script="true", all_nodes=True)
    before = len(app.client.list_commands(limit=1000))
    with pytest.raises(AccessDeniedError, match=r"Sid NoShell\) of policy 'no-shell-0' denies"):
        client.send_command(script="true", all_nodes=True)
    assert len(app.client.list_commands(limit=1000)) == before == 1


UPTIME_ONLY = doc(
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
)


def test_parameters_source_address_and_time_are_condition_keys(app):
    """Allowed: the command is made and its invocation waits for delivery (that it runs
    is tests/e2e/test_access.py); refused: nothing is made."""
    three_nodes(app)
    client = principal(app, "uptime-only", UPTIME_ONLY)
    command = client.send_command(script="uptime", tags={"role": "db"})
    [invocation] = client.list_invocations(command.id)
    assert invocation.status in WAITING
    with pytest.raises(AccessDeniedError):
        client.send_command(script="reboot", tags={"role": "db"})
    outsider = principal(
        app,
        "remote-only",
        doc(
            {
                "Effect": "Allow",
                "Action": "fleetrun:*",
                "Resource": "*",
                "Condition": {"IpAddress": {"fleetrun:SourceIp": "10.0.0.0/8"}},
            }
        ),
    )
    with pytest.raises(AccessDeniedError):
        outsider.list_nodes()  # the tests call from 127.0.0.1


DB_READER = doc(
    {
        "Effect": "Allow",
        "Action": ["fleetrun:ListNodes", "fleetrun:GetNode"],
        "Resource": "frn:fleetrun:node/*",
        "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
    },
    {
        "Effect": "Allow",
        "Action": ["fleetrun:GetCommand", "fleetrun:ListCommands"],
        "Resource": "*",
    },
    {
        "Effect": "Allow",
        "Action": ["fleetrun:ListCommandInvocations", "fleetrun:GetCommandInvocation"],
        "Resource": "*",
        "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
    },
)


def test_listings_and_reads_show_only_what_the_caller_may_read(app):
    nodes = three_nodes(app)
    client = principal(app, "db-reader", DB_READER)
    assert [n.name for n in client.list_nodes()] == ["db03"]
    assert client.get_node(nodes["db03"].id).name == "db03"
    with pytest.raises(AccessDeniedError, match="GetNode on frn:fleetrun:node/"):
        client.get_node(nodes["web01"].id)
    command = app.client.send_command(script="echo mixed", all_nodes=True)
    assert [i.node_name for i in client.list_invocations(command.id)] == ["db03"]
    assert client.get_invocation(command.id, nodes["db03"].id).node_name == "db03"
    with pytest.raises(AccessDeniedError):
        client.get_invocation(command.id, nodes["web01"].id)
    with pytest.raises(AccessDeniedError):
        client.get_output(command.id, nodes["web02"].id)


def test_command_listing_keeps_only_readable_commands_and_fills_pages(app):
    three_nodes(app)
    admin = app.client
    ids = [admin.send_command(script="true", tags={"role": "db"}).id for _ in range(3)]
    client = principal(
        app,
        "one-command",
        doc(
            {"Effect": "Allow", "Action": "fleetrun:ListCommands", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "fleetrun:ListCommands",
                "NotResource": f"frn:fleetrun:command/{ids[0]}",
            },
        ),
    )
    assert [c.id for c in client.list_commands(limit=1)] == [ids[0]]
    assert [c.id for c in client.list_commands(limit=50)] == [ids[0]]


def test_roles_are_made_of_policies_and_nothing_in_use_can_be_deleted(app):
    three_nodes(app)
    admin = app.client
    admin.create_policy(
        "nodes-read", doc({"Effect": "Allow", "Action": "fleetrun:ListNodes", "Resource": "*"})
    )
    role = admin.create_role("node-watcher", ["nodes-read", "ReadOnlyAccess"])
    assert role.policies == ["nodes-read", "ReadOnlyAccess"]
    client = principal(app, "watcher", roles=["node-watcher"])
    assert len(client.list_nodes()) == 3
    with pytest.raises(ConflictError, match="still used by role node-watcher"):
        admin.delete_policy("nodes-read")
    with pytest.raises(ConflictError, match="still attached to watcher"):
        admin.delete_role("node-watcher")
    with pytest.raises(ConflictError, match="built-in role"):
        admin.delete_role("Reader")
    with pytest.raises(ConflictError, match="built-in policy"):
        admin.put_policy("ReadOnlyAccess", doc(READ))
    with pytest.raises(NotFoundError, match="No policy 'nope'"):
        admin.create_role("broken", ["nope"])
    names = {r.name: r for r in admin.list_roles()}
    assert {"Reader", "Operator", "Administrator", "node-watcher"} <= set(names)
    assert names["Operator"].builtin and not names["node-watcher"].builtin
    admin.detach("watcher", role="node-watcher")
    admin.delete_role("node-watcher")
    admin.delete_policy("nodes-read")


def test_builtin_roles_reader_operator_administrator(app):
    """The Operator may send (its command waits for delivery here; that it runs is
    tests/e2e/test_access.py), not manage principals; the Reader may only read."""
    three_nodes(app)
    reader = principal(app, "r1", roles=["Reader"])
    operator = principal(app, "o1", roles=["Operator"])
    administrator = principal(app, "a1", roles=["Administrator"])
    for client in (reader, operator, administrator):
        assert len(client.list_nodes()) == 3
        assert client.list_audit_records(limit=1)
    with pytest.raises(AccessDeniedError):
        reader.send_command(script="true", all_nodes=True)
    with pytest.raises(AccessDeniedError):
        reader.create_activation()
    command = operator.send_command(script="true", tags={"role": "db"})
    assert operator.get_command(command.id).counts.get("AccessDenied") is None
    with pytest.raises(AccessDeniedError):
        operator.create_principal("o1-friend")
    with pytest.raises(AccessDeniedError):
        operator.create_token("o1")
    administrator.create_principal("a1-friend")


MALFORMED = [
    ('{"Version": "2012-10-17", "Statement": [', "not valid JSON at line 1"),
    (
        doc({"Effect": "Permit", "Action": "*", "Resource": "*"}),
        "in Statement 1, Effect 'Permit' is not Allow or Deny",
    ),
    (
        doc(
            {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringEqual": {"a:b": "c"}},
            }
        ),
        "'StringEqual' is unknown (did you mean StringEquals?)",
    ),
    (
        doc(
            {
                "Sid": "Office",
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {"IpAddress": {"fleetrun:SourceIp": "192.168.1.0/40"}},
            }
        ),
        "in Statement 1 (Sid 'Office'), condition IpAddress on 'fleetrun:SourceIp', "
        "'192.168.1.0/40' is not an IP address or CIDR range",
    ),
    (
        doc({"Effect": "Allow", "Action": "fleetrun:SendComand", "Resource": "*"}),
        "'fleetrun:SendComand' names no fleetrun action",
    ),
    (
        doc(
            {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTags/env": "prod"}},
            }
        ),
        "'fleetrun:ResourceTags/env' is not a fleetrun key",
    ),
]


@pytest.mark.parametrize(("document", "phrase"), MALFORMED)
def test_a_malformed_policy_is_refused_with_its_fault_and_place_and_nothing_is_stored(
    app, document, phrase
):
    admin = app.client
    before = [p.name for p in admin.list_policies()]
    with pytest.raises(ValidationError) as caught:
        admin.create_policy("malformed", document)
    assert phrase in caught.value.message and caught.value.message.endswith(".")
    with pytest.raises(ValidationError):
        admin.put_policy("malformed", document)
    assert [p.name for p in admin.list_policies()] == before


def test_a_policy_update_counts_from_the_next_request(app):
    three_nodes(app)
    admin = app.client
    client = principal(app, "flipper", doc(READ))
    assert client.list_nodes()
    updated = admin.put_policy(
        "flipper-0", doc(READ, {"Effect": "Deny", "Action": "fleetrun:ListNodes", "Resource": "*"})
    )
    assert updated.version == 2
    with pytest.raises(AccessDeniedError, match="denies it"):
        client.list_nodes()
    admin.put_policy("flipper-0", doc(READ))
    assert client.list_nodes()


def test_simulate_a_principal(app):
    admin = app.client
    admin.create_principal("sim")
    admin.create_policy(
        "sim-web",
        doc(
            {
                "Sid": "WebOnly",
                "Effect": "Allow",
                "Action": "fleetrun:SendCommand",
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
            }
        ),
    )
    admin.attach("sim", policy="sim-web")
    node = "frn:fleetrun:node/n-0123456789abcdef0"
    yes = admin.simulate("sim", "SendCommand", node, {"fleetrun:ResourceTag/role": "web"})
    assert yes.decision == "allow"
    assert [(m.policy, m.sid) for m in yes.matched_statements] == [("sim-web", "WebOnly")]
    no = admin.simulate("sim", "fleetrun:SendCommand", node, {"fleetrun:ResourceTag/role": "db"})
    assert no.decision == "deny" and no.matched_statements == []
    with pytest.raises(NotFoundError):
        admin.simulate("nobody-at-all", "SendCommand")


def test_principal_names_and_requests_are_checked(app):
    admin = app.client
    with pytest.raises(ValidationError, match="principal name 'bad name'"):
        admin.create_principal("bad name")
    admin.create_principal("twice")
    with pytest.raises(ConflictError):
        admin.create_principal("twice")
    with pytest.raises(ValidationError):
        admin.attach("twice", policy="a", role="b")
    response = app.http.put(
        "/v1/policies/x",
        headers={"authorization": f"Bearer {app.token}"},
        json={"document": json.dumps(doc(READ)), "typo": 1},
    )
    assert response.status_code == 400 and "'typo' is not a known field" in response.text


WEB_NODES_ONLY = {
    "Effect": "Allow",
    "Action": ["fleetrun:SendCommand", "fleetrun:CancelCommand", "fleetrun:ListNodes"],
    "Resource": "frn:fleetrun:node/*",
    "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
}
ANY_DOCUMENT = {
    "Effect": "Allow",
    "Action": "fleetrun:SendCommand",
    "Resource": "frn:fleetrun:document/*",
}
GROUPS_AND_COMMANDS = {
    "Effect": "Allow",
    "Action": [
        "fleetrun:GetGroup",
        "fleetrun:ListGroups",
        "fleetrun:GetCommand",
        "fleetrun:ListCommandInvocations",
    ],
    "Resource": "*",
}


def test_a_group_is_decided_per_member_node_when_sent_to_and_when_read(app):
    """Read: the caller sees only the members it may act on. Sent to: the member it may
    not touch is AccessDenied at send time, the others wait for delivery (that they then
    run is tests/e2e/test_access.py)."""
    nodes = three_nodes(app)
    admin = app.client
    everyone = [n.id for n in admin.list_nodes()]
    admin.create_group("everyone", node_ids=everyone)
    client = principal(app, "group-user", doc(WEB_NODES_ONLY, ANY_DOCUMENT, GROUPS_AND_COMMANDS))
    assert sorted(client.get_group("everyone").members) == sorted(
        [nodes["web01"].id, nodes["web02"].id]
    )
    assert len(admin.get_group("everyone").members) == 3
    command = client.send_command(script="true", group="everyone")
    statuses = {i.node_name: i.status for i in admin.list_invocations(command.id)}
    assert statuses["db03"] == "AccessDenied"
    assert {statuses["web01"], statuses["web02"]} <= WAITING


def test_documents_are_resources_of_their_own(app):
    admin = app.client
    content = json.dumps(
        {
            "schemaVersion": "2.2",
            "description": "say hello",
            "mainSteps": [
                {
                    "action": "runShellScript",
                    "name": "hello",
                    "inputs": {"runCommand": ["echo hello"]},
                }
            ],
        }
    )
    admin.create_document("Team-Hello", content)
    client = principal(
        app,
        "team-docs",
        doc(
            {
                "Effect": "Allow",
                "Action": [
                    "fleetrun:ListDocuments",
                    "fleetrun:GetDocument",
                    "fleetrun:UpdateDocument",
                ],
                "Resource": "frn:fleetrun:document/Team-*",
            },
            {
                "Effect": "Allow",
                "Action": "fleetrun:CreateDocument",
                "Resource": "frn:fleetrun:document/Team-*",
            },
        ),
    )
    assert [d.name for d in client.list_documents()] == ["Team-Hello"]
    assert client.get_document("Team-Hello").name == "Team-Hello"
    with pytest.raises(AccessDeniedError):
        client.get_document("RunShellScript")
    with pytest.raises(AccessDeniedError, match="CreateDocument on frn:fleetrun:document/Other"):
        client.create_document("Other-Doc", content)
    client.create_document("Team-Bye", content)
    with pytest.raises(AccessDeniedError):
        client.delete_document("Team-Bye")


def test_deleting_a_node_is_decided_on_that_node(app):
    [web] = app.enrol(1, tags={"role": "web"})
    [db] = app.enrol(1, tags={"role": "db"}, prefix="db")
    client = principal(
        app,
        "janitor",
        doc(
            {
                "Effect": "Allow",
                "Action": "fleetrun:DeleteNode",
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
            }
        ),
    )
    with pytest.raises(AccessDeniedError):
        client.delete_node(web.node_id)
    client.delete_node(db.node_id)
    assert [n.id for n in app.client.list_nodes()] == [web.node_id]
