"""The access-control commands of `fleetrun`, run as an operator would run them: the real
entry point in process, against the real app or offline."""

from __future__ import annotations

import json

from tests.inprocess import run_cli


def cli(app, *args, env=None):
    """`fleetrun ARGS` in process, against the app, or with no server at all (app None)."""
    env = dict(env or {})
    if app is None:
        return run_cli(*args, env=env)
    token = env.pop("FLEETRUN_TOKEN", True)
    return app.cli(*args, token=token, env=env)


WEB_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": "fleetrun:List*", "Resource": "*"},
        {
            "Sid": "WebOnly",
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:node/*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": ["web"]}},
        },
        {
            "Sid": "NotOnFriday",
            "Effect": "Deny",
            "Action": "fleetrun:SendCommand",
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"fleetrun:Parameter/commands": ["reboot"]}},
        },
    ],
}


def test_principals_tokens_policies_and_roles_from_the_command_line(app, tmp_path):
    assert cli(app, "principals", "create", "ci-bot", "--kind", "service").returncode == 0
    policy = tmp_path / "web.json"
    policy.write_text(json.dumps(WEB_ONLY, indent=2))
    created = cli(app, "policies", "create", "web-only", "--file", str(policy))
    assert created.returncode == 0, created.stderr
    assert "Created policy web-only (3 statement(s))" in created.stdout
    role = cli(
        app, "roles", "create", "web-ops", "--policy", "web-only", "--policy", "ReadOnlyAccess"
    )
    assert role.returncode == 0, role.stderr
    attach = cli(app, "principals", "attach", "ci-bot", "--role", "web-ops")
    assert attach.returncode == 0 and "role web-ops" in attach.stdout
    token = cli(app, "tokens", "create", "--principal", "ci-bot", "--expires", "30d", "--json")
    assert token.returncode == 0, token.stderr
    secret = json.loads(token.stdout)["token"]
    assert secret.startswith("frt_")
    me = cli(app, "whoami", "--json", env={"FLEETRUN_TOKEN": secret})
    assert json.loads(me.stdout)["principal"] == "ci-bot"
    listed = cli(app, "tokens", "list", "--principal", "ci-bot", "--json")
    assert secret not in listed.stdout and len(json.loads(listed.stdout)) == 1
    shown = cli(app, "principals", "show", "ci-bot")
    assert "role web-ops" in shown.stdout and "service" in shown.stdout
    assert "web-only" in cli(app, "policies", "list").stdout
    assert json.loads(cli(app, "policies", "show", "web-only").stdout) == WEB_ONLY
    assert "ReadOnlyAccess" in cli(app, "roles", "show", "Reader").stdout
    denied = cli(app, "principals", "list", env={"FLEETRUN_TOKEN": secret})
    assert denied.returncode == 0  # List* is allowed
    refused = cli(app, "principals", "delete", "admin", env={"FLEETRUN_TOKEN": secret})
    assert refused.returncode == 3
    assert refused.stderr.startswith("fleetrun: ci-bot may not perform fleetrun:DeletePrincipal")
    revoke = cli(app, "tokens", "revoke", json.loads(token.stdout)["id"])
    assert revoke.returncode == 0
    after = cli(app, "whoami", env={"FLEETRUN_TOKEN": secret})
    assert after.returncode == 3 and "not valid" in after.stderr
    assert cli(app, "principals", "detach", "ci-bot", "--role", "web-ops").returncode == 0
    assert cli(app, "roles", "delete", "web-ops").returncode == 0
    assert cli(app, "policies", "delete", "web-only").returncode == 0
    assert cli(app, "principals", "delete", "ci-bot").returncode == 0


def test_a_malformed_policy_file_is_refused_in_one_sentence(app, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow",}\n  ]\n}\n'
    )
    done = cli(app, "policies", "create", "bad", "--file", str(bad))
    assert done.returncode == 2
    assert "Policy 'bad' is not valid JSON at line 4" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    wrong_ip = tmp_path / "ip.json"
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    statement["Condition"] = {"NotIpAddress": {"fleetrun:SourceIp": ["10.0.0.0/8", "10.1.1"]}}
    wrong_ip.write_text(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    done = cli(app, "policies", "create", "ip", "--file", str(wrong_ip))
    assert done.returncode == 2 and "'10.1.1' is not an IP address or CIDR range" in done.stderr
    offline = cli(None, "policy", "validate", str(wrong_ip))
    assert offline.returncode == 2 and "Statement 1" in offline.stderr
    assert "bad" not in cli(app, "policies", "list").stdout


def test_simulate_offline_with_policy_files_and_contexts(tmp_path):
    policy = tmp_path / "web.json"
    policy.write_text(json.dumps(WEB_ONLY))
    node = "frn:fleetrun:node/n-0123456789abcdef0"
    args = ["policy", "simulate", "--policy-file", str(policy), "--action", "SendCommand"]
    allow = cli(
        None, *args, "--resource", node, "--context", "fleetrun:ResourceTag/role=web", "--json"
    )
    assert allow.returncode == 0, allow.stderr
    assert json.loads(allow.stdout) == {
        "decision": "allow",
        "matched_statements": [
            {"policy": "web.json", "index": 2, "sid": "WebOnly", "effect": "Allow"}
        ],
    }
    deny = cli(None, *args, "--resource", node, "--context", "fleetrun:ResourceTag/role=db")
    assert deny.returncode == 1
    assert deny.stdout.splitlines() == [
        "deny",
        f"No statement allows fleetrun:SendCommand on {node}.",
    ]
    context = tmp_path / "context.json"
    context.write_text(
        json.dumps(
            {
                "fleetrun:ResourceTag/role": "web",
                "fleetrun:Parameter/commands": ["uptime", "reboot"],
            }
        )
    )
    explicit = cli(None, *args, "--resource", node, "--context-file", str(context), "--json")
    assert explicit.returncode == 1
    assert json.loads(explicit.stdout)["matched_statements"][0]["sid"] == "NotOnFriday"
    repeated = cli(
        None,
        *args,
        "--resource",
        node,
        "--context",
        "fleetrun:ResourceTag/role=web",
        "--context",
        "fleetrun:Parameter/commands=ls",
        "--context",
        "fleetrun:Parameter/commands=reboot",
        "--json",
    )
    assert json.loads(repeated.stdout)["decision"] == "deny"
    # No policy at all allows nothing: an implicit deny, not a refusal of the question.
    neither = cli(None, "policy", "simulate", "--action", "SendCommand")
    assert neither.returncode == 1 and neither.stdout.startswith("deny")
    assert "No statement allows fleetrun:SendCommand" in neither.stdout
    both = cli(None, *args, "--principal", "someone")
    assert both.returncode == 2 and "--principal NAME, or --policy-file" in both.stderr


def test_simulate_against_a_principal_on_the_server(app, tmp_path):
    policy = tmp_path / "web.json"
    policy.write_text(json.dumps(WEB_ONLY))
    assert cli(app, "principals", "create", "sim").returncode == 0
    assert cli(app, "policies", "create", "web-only", "--file", str(policy)).returncode == 0
    assert cli(app, "principals", "attach", "sim", "--policy", "web-only").returncode == 0
    done = cli(
        app,
        "policy",
        "simulate",
        "--principal",
        "sim",
        "--action",
        "fleetrun:SendCommand",
        "--resource",
        "frn:fleetrun:node/n-0123456789abcdef0",
        "--context",
        "fleetrun:ResourceTag/role=web",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["matched_statements"][0]["sid"] == "WebOnly"
    human = cli(app, "policy", "simulate", "--principal", "sim", "--action", "ListNodes")
    assert human.returncode == 0
    assert human.stdout.splitlines()[1].startswith(
        "Statement 1 (Sid Read) of policy 'web-only' allows"
    )


# -- simulate with a node's real tags; the audit log's decisions ----------------------

ON_WEB_NODES = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "fleetrun:SendCommand", "Resource": "frn:fleetrun:document/*"},
        {
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:node/*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
        },
    ],
}  # fmt: skip


def _webby(app):
    """web (role=web) and db (role=db), and a principal that may send to web nodes only,
    with a client of its own."""
    [web] = app.enrol(1, tags={"role": "web"}, prefix="web")
    [db] = app.enrol(1, tags={"role": "db"}, prefix="db")
    admin = app.client
    admin.create_principal("webby")
    admin.create_policy("on-web-nodes", ON_WEB_NODES)
    admin.attach("webby", policy="on-web-nodes")
    token = admin.create_token("webby").token
    return web, db, app.client_for(token), token


def _simulate(app, node_id, *extra):
    return cli(
        app, "policy", "simulate", "--principal", "webby", "--action", "SendCommand",
        "--resource", f"frn:fleetrun:node/{node_id}", *extra,
    )  # fmt: skip


def test_simulate_on_a_node_decides_with_its_tags_as_the_real_send_does(app):
    web, db, webby, _ = _webby(app)
    sent = webby.send_command(script="true", node_ids=[web.node_id, db.node_id])
    real = {i.node_id: i.status for i in app.client.list_invocations(sent.id)}
    assert real[db.node_id] == "AccessDenied" and real[web.node_id] != "AccessDenied"

    for node in (web, db):
        done = _simulate(app, node.node_id)
        expected = "deny" if real[node.node_id] == "AccessDenied" else "allow"
        assert done.stdout.splitlines()[0] == expected, done.stdout + done.stderr
        assert done.returncode == (0 if expected == "allow" else 1)
        assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    shown = _simulate(app, web.node_id)
    assert "Decided with the node's tags: role=web." in shown.stdout
    as_json = json.loads(_simulate(app, db.node_id, "--json").stdout)
    assert as_json["decision"] == "deny" and as_json["node_tags"] == {"role": "db"}
    # What if db were a web node? A key given in the context wins over the node's tag.
    what_if = _simulate(app, db.node_id, "--context", "fleetrun:ResourceTag/role=web")
    assert what_if.returncode == 0 and what_if.stdout.startswith("allow")


def test_simulate_on_a_node_that_is_not_there_says_so(app):
    _webby(app)
    missing = _simulate(app, "n-0123456789abcdef0")
    assert missing.returncode == 1 and missing.stdout.startswith("deny")
    assert "Warning: No node n-0123456789abcdef0 exists: this was decided without" in (
        missing.stderr
    )
    by_name = _simulate(app, "web01")
    assert by_name.returncode != 0 and "Traceback" not in by_name.stderr
    assert "frn:fleetrun:node/web01 names no node id" in by_name.stderr
    assert "fleetrun nodes show web01" in by_name.stderr


def test_audit_list_shows_allow_and_deny_and_the_node_a_denial_was_about(app):
    web, db, webby, token = _webby(app)
    webby.send_command(script="true", node_ids=[web.node_id, db.node_id])
    refused = app.cli("nodes", "delete", db.node_id, "--yes", token=token)
    assert refused.returncode != 0
    assert f"on frn:fleetrun:node/{db.node_id}" in refused.stderr  # the error names it too

    records = json.loads(cli(app, "audit", "list", "--principal", "webby", "--json").stdout)
    decided = {(r["action"], r["resource"], r["decision"]) for r in records}
    node = f"frn:fleetrun:node/{db.node_id}"
    assert ("fleetrun:SendCommand", node, "deny") in decided  # the node skipped by the send
    assert ("fleetrun:DeleteNode", node, "deny") in decided  # refused before the route ran
    assert ("fleetrun:SendCommand", "frn:fleetrun:document/RunShellScript", "allow") in decided

    table = cli(app, "audit", "list", "--principal", "webby").stdout
    rows = [line.split() for line in table.splitlines()[2:]]  # SEQ, TIME (3 words), ...
    assert {row[7] for row in rows} == {"allow", "deny"}, table
    assert "Success" not in table and "Failed" not in table
    assert ["fleetrun:DeleteNode", node, "deny"] in [row[5:8] for row in rows], table
