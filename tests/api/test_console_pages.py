"""Console pages in process, as principals with different policies: what each sees,
what it is refused (with the API's sentence and status), and the actions that send,
cancel and re-run commands."""

from __future__ import annotations

import json
import re

from tests.api.test_console_session import ORIGIN, csrf_of, sign_in

WEB_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["fleetrun:Get*", "fleetrun:List*", "fleetrun:SendCommand"],
            "Resource": "*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
        },
        {
            "Effect": "Allow",
            "Action": [
                "fleetrun:ListDocuments",
                "fleetrun:GetDocument",
                "fleetrun:ListCommands",
                "fleetrun:GetCommand",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:document/*",
        },
    ],
}


def token_for(app, name, document):
    admin = app.client
    admin.create_principal(name)
    admin.create_policy(name, document)
    admin.attach(name, policy=name)
    return admin.create_token(name).token


def fleet(app):
    web = app.enrol(2, tags={"role": "web"}, prefix="web")
    db = app.enrol(1, tags={"role": "db"}, prefix="db")
    return web, db


def post(app, url, data, **kwargs):
    token = csrf_of(app.http.get("/ui/nodes").text)
    return app.http.post(url, data={**data, "csrf": token}, headers={"origin": ORIGIN}, **kwargs)


def test_a_tag_scoped_principal_sees_only_its_nodes_and_is_refused_anothers(app):
    web, db = fleet(app)
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    page = app.http.get("/ui/nodes")
    assert page.status_code == 200
    assert all(n.node_id in page.text for n in web)
    assert db[0].node_id not in page.text

    forced = app.http.get(f"/ui/nodes/{db[0].node_id}")
    assert forced.status_code == 403
    assert "webops may not perform fleetrun:GetNode" in forced.text
    assert "Not allowed" in forced.text
    own = app.http.get(f"/ui/nodes/{web[0].node_id}")
    assert own.status_code == 200
    assert "Save tags" not in own.text  # TagNode is not granted: the form is not offered
    assert "You may not change this node" in own.text
    missing = app.http.get("/ui/nodes/n-0123456789abcdef0")
    assert missing.status_code == 404


def test_the_fleet_filters_by_name_status_tag_and_group_and_pages(app):
    fleet(app)
    app.client.create_group("dbs", tags={"role": ["db"]})
    sign_in(app, app.token)

    def names(**query):
        text = app.http.get("/ui/nodes", params={"limit": 2, **query}).text
        return re.findall(r'href="/ui/nodes/n-[0-9a-f]+">([^<]+)<', text), text

    assert names(tag="role=db")[0] == ["db03"]
    assert names(group="dbs")[0] == ["db03"]
    assert names(name="web")[0] == ["web01", "web02"]
    assert names(status="Online")[0] == []
    first, text = names()
    assert first == ["db03", "web01"]
    cursor = re.search(r"cursor=([^\"&]+)", text).group(1)
    assert names(cursor=cursor.replace("%3D", "="))[0] == ["web02"]
    unknown = app.http.get("/ui/nodes", params={"group": "nope"})
    assert unknown.status_code == 404 and "No group &#39;nope&#39; exists" in unknown.text


def test_run_preview_counts_the_nodes_the_caller_may_see(app):
    fleet(app)
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    preview = app.http.get("/ui/run/preview", params={"target_kind": "tags", "target": "role=web"})
    assert 'id="preview-count">2<' in preview.text
    hidden = app.http.get("/ui/run/preview", params={"target_kind": "tags", "target": "role=db"})
    assert 'id="preview-count">0<' in hidden.text
    bad = app.http.get("/ui/run/preview", params={"target_kind": "tags", "target": "role"})
    assert "is not KEY=VALUE" in bad.text


def test_sending_from_the_console_is_decided_per_node_as_the_api_does(app):
    web, db = fleet(app)
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    sent = post(
        app,
        "/ui/run",
        {"target_kind": "nodes", "target": f"{web[0].node_id} {db[0].node_id}",
         "document": "RunShellScript", "script": "echo hi", "comment": "from the console"},
        follow_redirects=False,
    )  # fmt: skip
    assert sent.status_code == 303, sent.text
    command_id = sent.headers["location"].rsplit("/", 1)[1]
    command = app.client.get_command(command_id)
    assert command.principal == "webops" and command.comment == "from the console"
    statuses = {i.node_id: i.status for i in app.client.list_invocations(command_id)}
    assert statuses[db[0].node_id] == "AccessDenied"
    page = app.http.get(f"/ui/commands/{command_id}")
    assert page.status_code == 200 and "AccessDenied" in page.text
    assert 'sse-connect="/ui/commands/' in page.text
    assert "Cancel all" not in page.text  # webops may not CancelCommand


def test_cancel_and_rerun_only_failed_nodes(app):
    web, _ = fleet(app)
    sign_in(app, app.token)
    sent = post(
        app, "/ui/run",
        {"target_kind": "tags", "target": "role=web", "script": "sleep 100"},
        follow_redirects=False,
    )  # fmt: skip
    command_id = sent.headers["location"].rsplit("/", 1)[1]
    page = app.http.get(f"/ui/commands/{command_id}")
    assert "Cancel all" in page.text
    picked = post(
        app, f"/ui/commands/{command_id}/cancel", {"node": web[0].node_id},
        follow_redirects=False,
    )  # fmt: skip
    assert picked.status_code == 303
    statuses = {i.node_id: i.status for i in app.client.list_invocations(command_id)}
    assert statuses[web[0].node_id] == "Cancelled"
    assert statuses[web[1].node_id] in {"Pending", "Delayed"}  # no agent here to take it
    post(app, f"/ui/commands/{command_id}/cancel", {"all": "1"})
    assert app.client.get_command(command_id).status == "Cancelled"

    again = post(
        app, f"/ui/commands/{command_id}/rerun", {"only": "failed"}, follow_redirects=False
    )
    new_id = again.headers["location"].rsplit("/", 1)[1]
    assert new_id != command_id
    rerun = app.client.get_command(new_id)
    assert rerun.parameters == {"commands": ["sleep 100"]}
    assert sorted(i.node_id for i in app.client.list_invocations(new_id)) == sorted(
        n.node_id for n in web
    )


def test_document_parameters_are_checked_with_the_apis_sentences(app):
    app.client.create_document(
        "Greet",
        json.dumps({
            "schemaVersion": "2.2",
            "parameters": {
                "colour": {"type": "String", "allowedValues": ["red", "blue"], "default": "red"},
                "name": {"type": "String", "allowedPattern": "^[a-z]+$", "default": "x"},
            },
            "mainSteps": [
                {"action": "runShellScript", "name": "hi",
                 "inputs": {"runCommand": ["echo {{ name }}"]}}
            ],
        }),
    )  # fmt: skip
    sign_in(app, app.token)
    form = app.http.get("/ui/run", params={"document": "Greet"})
    assert "<option selected>red</option>" in form.text and 'name="param.name"' in form.text
    checked = post(app, "/ui/run/check", {"document": "Greet", "param.name": "Bad1"})
    assert "Parameter &#39;name&#39; value &#39;Bad1&#39; does not match ^[a-z]+$." in checked.text
    fine = post(app, "/ui/run/check", {"document": "Greet", "param.name": "ok"})
    assert "The parameters are valid." in fine.text
    secret = post(app, "/ui/run", {"document": "Greet", "target": "x=y", "secret.pw": "s"})
    assert secret.status_code == 400 and "fleetrun send --secret-param" in secret.text


def test_the_stream_sends_the_table_and_ends_when_the_command_is_done(app):
    (node,) = app.enrol(1, tags={"role": "web"})
    sign_in(app, app.token)
    sent = post(
        app, "/ui/run", {"target_kind": "nodes", "target": node.node_id, "script": "true"},
        follow_redirects=False,
    )  # fmt: skip
    command_id = sent.headers["location"].rsplit("/", 1)[1]
    app.client.cancel_command(command_id)
    with app.http.stream("GET", f"/ui/commands/{command_id}/stream") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        body = "".join(events.iter_text())
    assert "event: summary" in body and "event: invocations" in body
    assert f'data-node="{node.node_id}" data-status="Cancelled"' in body
    assert body.rstrip().endswith("data: done")


def test_a_command_of_another_principal_is_refused(app):
    _, db = fleet(app)
    command = app.client.send_command(script="true", node_ids=[db[0].node_id])
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    page = app.http.get(f"/ui/commands/{command.id}")
    assert page.status_code == 200  # GetCommand is granted on every command
    assert f'data-node="{db[0].node_id}"' not in page.text  # its db node is not listed
    output = app.http.get(f"/ui/commands/{command.id}/nodes/{db[0].node_id}")
    assert output.status_code == 403


def test_a_run_command_put_on_a_group_from_the_console_reaches_every_member(app):
    web, _ = fleet(app)
    app.client.create_group("webs", tags={"role": ["web"]})
    sign_in(app, app.token)
    page = app.http.get("/ui/groups/webs")
    assert page.status_code == 200 and "Put and run" in page.text
    put = post(
        app, "/ui/groups/webs/run-commands",
        {"name": "hello", "script": "echo hello"},
        follow_redirects=False,
    )  # fmt: skip
    assert put.status_code == 303, put.text
    grc = app.client.get_group_run_command("webs", "hello")
    assert sorted(i.nodeId for i in grc.instances) == sorted(n.node_id for n in web)
    page = app.http.get("/ui/groups/webs")
    assert 'data-name="hello"' in page.text and "of 2" in page.text
    listed = app.http.get("/ui/groups")
    assert 'href="/ui/groups/webs"' in listed.text
    again = post(app, "/ui/groups/webs/run-commands/hello/run", {}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/ui/groups/webs"
    gone = post(app, "/ui/groups/webs/run-commands/hello/delete", {}, follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/ui/groups/webs"
    assert 'data-name="hello"' not in app.http.get("/ui/groups/webs").text


def test_a_tag_scoped_principal_may_not_put_a_run_command_on_a_group(app):
    fleet(app)
    app.client.create_group("dbs", tags={"role": ["db"]})
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    page = app.http.get("/ui/groups/dbs")
    assert page.status_code == 403  # GetGroup is granted only on role=web resources
    assert "webops may not perform fleetrun:GetGroup" in page.text
    refused = post(app, "/ui/groups/dbs/run-commands", {"name": "x", "script": "true"})
    assert refused.status_code == 403
    assert "webops may not perform fleetrun:PutGroupRunCommand" in refused.text
    rerun = post(app, "/ui/groups/dbs/run-commands/x/run", {})
    assert rerun.status_code == 403
    assert "webops may not perform fleetrun:StartGroupRunCommand" in rerun.text


def test_documents_and_the_audit_log_are_shown_to_whom_the_api_shows_them(app):
    sign_in(app, app.token)
    listed = app.http.get("/ui/documents")
    assert 'href="/ui/documents/RunShellScript"' in listed.text
    shown = app.http.get("/ui/documents/RunShellScript")
    assert shown.status_code == 200 and "commands" in shown.text and "StringList" in shown.text
    audit = app.http.get("/ui/audit", params={"principal": "admin"})
    assert audit.status_code == 200 and "POST /ui/sign-in 303" in audit.text
    verdict = app.http.get("/ui/audit/verify", headers={"hx-request": "true"})
    assert 'class="ok"' in verdict.text

    sign_in(app, token_for(app, "webops", WEB_ONLY))
    refused = app.http.get("/ui/audit")
    assert refused.status_code == 403
    assert "webops may not perform fleetrun:ListAuditRecords" in refused.text
    assert 'href="/ui/audit"' not in app.http.get("/ui/nodes").text  # not offered


def test_the_events_page_shows_recent_events_and_checks_the_pattern(app):
    """(Its live tail is the API's stream, which needs a real server: see
    tests/e2e/test_console.py.)"""
    sign_in(app, app.token)
    bad = app.http.get("/ui/events", params={"pattern": "{not json"})
    assert bad.status_code == 200 and 'class="error"' in bad.text
    (node,) = app.enrol(1)
    page = app.http.get("/ui/events")
    assert page.status_code == 200 and node.node_id in page.text  # its registration
    assert 'sse-connect="/ui/events/stream?pattern="' in page.text
    only = app.http.get(
        "/ui/events", params={"pattern": '{"detail-type": ["Command Status-change Notification"]}'}
    )
    assert node.node_id not in only.text  # its registration does not match


def test_access_pages_make_a_token_shown_once_simulate_and_revoke(app):
    (node,) = app.enrol(1, tags={"role": "db"})
    token_for(app, "webops", WEB_ONLY)
    sign_in(app, app.token)
    listed = app.http.get("/ui/access")
    assert 'href="/ui/access/principals/webops"' in listed.text
    assert 'href="/ui/access/policies/webops"' in listed.text
    policy = app.http.get("/ui/access/policies/webops")
    assert "fleetrun:ResourceTag/role" in policy.text

    made = post(app, "/ui/access/principals/webops/tokens", {"description": "from the console"})
    assert made.status_code == 200
    token = re.search(r'id="new-token" tabindex="0">([^<]+)<', made.text).group(1)
    assert [n.id for n in app.client_for(token).list_nodes()] == []  # webops' view: no web node
    again = app.http.get("/ui/access/principals/webops")
    assert token not in again.text  # shown once

    decided = post(
        app, "/ui/access/principals/webops/simulate",
        {"action": "GetNode", "resource": f"frn:fleetrun:node/{node.node_id}"},
    )  # fmt: skip
    assert 'id="decision">deny<' in decided.text and "role=db" in decided.text

    token_id = next(
        t.id for t in app.client.list_tokens(principal="webops")
        if t.description == "from the console"
    )  # fmt: skip
    revoked = post(app, f"/ui/access/tokens/{token_id}/revoke", {}, follow_redirects=False)
    assert revoked.status_code == 303
    assert not next(
        t for t in app.client.list_tokens(principal="webops") if t.id == token_id
    ).active

    sign_in(app, token_for(app, "viewer", WEB_ONLY))
    refused = app.http.get("/ui/access/principals/admin")
    assert refused.status_code == 403
    assert "viewer may not perform fleetrun:GetPrincipal" in refused.text


def test_rules_pattern_tried_and_saved_enable_disable_as_the_api_decides(app):
    app.client.create_rule(
        "failures",
        pattern={"detail-type": ["Command Status-change Notification"]},
        targets=[{"target": "webhook:http://127.0.0.1:9/hook", "secret": "s" * 16}],
    )
    app.client.create_channel("ops", target="webhook:http://127.0.0.1:9/ops", secret="s" * 16)
    sign_in(app, app.token)
    listed = app.http.get("/ui/rules")
    assert 'href="/ui/rules/failures"' in listed.text and 'href="/ui/channels/ops"' in listed.text
    channel = app.http.get("/ui/channels/ops")
    assert channel.status_code == 200 and "No deliveries." in channel.text
    page = app.http.get("/ui/rules/failures")
    assert page.status_code == 200 and "Save the pattern" in page.text

    tried = post(
        app, "/ui/rules/failures/test",
        {"pattern": '{"detail": {"status": ["Failed"]}}', "event": '{"detail": {"status": "Failed"}}'},
    )  # fmt: skip
    assert 'id="matches"' in tried.text and "matches: the event matches" in tried.text
    bad = post(app, "/ui/rules/failures/test", {"pattern": "[]", "event": "{}"})
    assert "A pattern must be a JSON object" in bad.text

    saved = post(
        app, "/ui/rules/failures/pattern", {"pattern": '{"detail": {"status": ["Failed"]}}'},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    assert app.client.get_rule("failures").pattern == {"detail": {"status": ["Failed"]}}
    post(app, "/ui/rules/failures/disable", {})
    assert app.client.get_rule("failures").enabled is False

    sign_in(app, token_for(app, "webops", WEB_ONLY))
    refused = post(app, "/ui/rules/failures/enable", {})
    assert refused.status_code == 403
    assert app.client.get_rule("failures").enabled is False


def test_a_document_is_created_and_edited_with_the_apis_validation(app):
    sign_in(app, app.token)
    content = json.dumps(
        {"schemaVersion": "2.2", "mainSteps": [
            {"action": "runShellScript", "name": "hi", "inputs": {"runCommand": ["echo hi"]}}
        ]}
    )  # fmt: skip
    bad = post(app, "/ui/documents-new", {"name": "Hello", "content": '{"schemaVersion": "9"}'})
    assert bad.status_code == 400 and "The document is not valid" in bad.text
    assert "schemaVersion&#34;: &#34;9" in bad.text  # the text comes back as written
    made = post(app, "/ui/documents-new", {"name": "Hello", "content": content},
                follow_redirects=False)  # fmt: skip
    assert made.status_code == 303 and made.headers["location"] == "/ui/documents/Hello"
    edit = app.http.get("/ui/documents/Hello/edit")
    assert edit.status_code == 200 and "runShellScript" in edit.text
    again = post(app, "/ui/documents/Hello/edit", {"content": content.replace("hi", "ho")},
                 follow_redirects=False)  # fmt: skip
    assert again.status_code == 303
    assert app.client.get_document("Hello", version="2").version == "2"


def test_a_command_sent_from_the_console_can_notify_a_channel(app):
    (node,) = app.enrol(1)
    app.client.create_channel("ops", target="webhook:http://127.0.0.1:9/ops", secret="s" * 16)
    sign_in(app, app.token)
    assert "<option>ops</option>" in app.http.get("/ui/run").text
    sent = post(
        app, "/ui/run",
        {"target_kind": "nodes", "target": node.node_id, "script": "true",
         "notify_channel": "ops", "notify_event": "Failed", "notify_type": "Invocation"},
        follow_redirects=False,
    )  # fmt: skip
    command = app.client.get_command(sent.headers["location"].rsplit("/", 1)[1])
    assert command.notification.channel == "ops"
    assert command.notification.events == ["Failed"] and command.notification.type == "Invocation"


def test_a_run_command_on_a_node_with_its_history_rerun_and_delete(app):
    (node,) = app.enrol(1)
    sign_in(app, app.token)
    url = f"/ui/nodes/{node.node_id}"
    put = post(app, f"{url}/run-commands", {"name": "hello", "script": "echo hi"},
               follow_redirects=False)  # fmt: skip
    assert put.status_code == 303
    assert f'href="{url}/run-commands/hello"' in app.http.get(url).text
    shown = app.http.get(f"{url}/run-commands/hello")
    assert shown.status_code == 200 and "Create (gen. 1)" in shown.text
    rerun = post(app, f"{url}/run-commands/hello/run", {})
    assert rerun.status_code == 200, rerun.text
    history = app.http.get(f"{url}/run-commands/hello").text
    assert "Rerun" in history, re.findall(r"<td>([A-Za-z]+ \(gen[^<]*)</td>", history)
    post(app, f"{url}/run-commands/hello/delete", {})
    assert app.http.get(f"{url}/run-commands/hello").status_code == 404
    neither = post(app, f"{url}/run-commands", {"name": "x"})
    assert neither.status_code == 400 and "a script, or the name of a document" in neither.text


def test_a_form_value_the_api_refuses_is_a_sentence_not_a_server_error(app):
    (node,) = app.enrol(1)
    sign_in(app, app.token)
    long = post(
        app, "/ui/run",
        {"target_kind": "nodes", "target": node.node_id, "script": "true", "comment": "x" * 101},
    )  # fmt: skip
    assert long.status_code == 400 and "comment" in long.text
    negative = post(app, "/ui/access/principals/admin/tokens", {"expires_in_h": "-1"})
    assert negative.status_code == 400 and "expires_in_s" in negative.text
    assert app.client.list_commands() == []
