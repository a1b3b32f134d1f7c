"""The audit log: every request and agent session recorded, append-only, and a hash
chain that names the first record altered or deleted behind the server's back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, text

from fleetrun.core.errors import AccessDeniedError, LimitExceededError
from fleetrun.sdk import Client
from tests.e2e.test_cli import cli
from tests.harness import fleet as running_fleet
from tests.harness import wait_for


def database(fleet):
    """A direct connection to the server's database, as an intruder would have."""
    url = fleet.server.db.url
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return create_engine(url, **kwargs)


def drop_append_only(engine):
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_no_delete"))


def call(fleet, path, token=None, **headers):
    token = fleet.server.token if token is None else token
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.get(fleet.server.url + path, headers=headers)


def test_every_request_is_recorded_with_who_what_where_and_how_it_ended(fleet):
    admin = fleet.client
    assert call(fleet, "/v1/nodes", **{"x-request-id": "req-ok"}).status_code == 200
    assert (
        call(fleet, "/v1/nodes", token="frt_wrong", **{"x-request-id": "req-401"}).status_code
        == 401
    )
    admin.create_principal("nobody")
    token = admin.create_token("nobody").token
    assert call(fleet, "/v1/nodes", token=token, **{"x-request-id": "req-403"}).status_code == 403
    assert call(fleet, "/v1/commands/nope", **{"x-request-id": "req-404"}).status_code == 404
    records = {r.request_id: r for r in admin.list_audit_records(limit=1000)}
    ok, unauthenticated, denied, missing = (
        records[k] for k in ("req-ok", "req-401", "req-403", "req-404")
    )
    assert (ok.principal, ok.action, ok.decision, ok.status) == (
        "admin",
        "fleetrun:ListNodes",
        "allow",
        200,
    )
    assert (ok.kind, ok.method, ok.path, ok.source_ip) == (
        "request",
        "GET",
        "/v1/nodes",
        "127.0.0.1",
    )
    assert (unauthenticated.principal, unauthenticated.decision, unauthenticated.status) == (
        None,
        None,
        401,
    )
    assert (denied.principal, denied.decision, denied.status) == ("nobody", "deny", 403)
    assert denied.detail["reason"] == "no statement allows fleetrun:ListNodes"
    assert (missing.action, missing.status) == ("fleetrun:GetCommand", 404)
    assert ok.at <= denied.at and ok.seq < denied.seq
    only = admin.list_audit_records(principal="nobody", limit=100)
    assert {r.request_id for r in only} >= {"req-403"} and all(
        r.principal == "nobody" for r in only
    )
    creates = admin.list_audit_records(action="fleetrun:CreateToken", limit=100)
    assert [r.resource for r in creates] == ["frn:fleetrun:principal/nobody"]
    future = admin.list_audit_records(since=datetime.now(UTC) + timedelta(hours=1))
    assert future == []


def test_agent_sessions_are_recorded(fleet):
    agent = fleet.add_agent()
    agent.stop()
    wait_for(lambda: fleet.ping_status(agent) == "ConnectionLost", what="the node to go")

    def sessions():
        found = fleet.client.list_audit_records(limit=1000)
        return (
            [r for r in found if r.kind == "agent"]
            if len([r for r in found if r.kind == "agent"]) >= 2
            else None
        )

    connect, disconnect = sorted(
        wait_for(sessions, what="both session records"), key=lambda r: r.seq
    )
    resource = f"frn:fleetrun:node/{agent.node_id}"
    assert (connect.action, connect.resource, connect.decision) == (
        "agent:Connect",
        resource,
        "allow",
    )
    assert disconnect.action == "agent:Disconnect" and disconnect.resource == resource
    assert connect.detail["session_id"] == disconnect.detail["session_id"]
    assert connect.source_ip == "127.0.0.1" and connect.detail["agent_version"]
    [register] = fleet.client.list_audit_records(action="agent:Register")
    assert (register.principal, register.status) == (None, 201)
    assert register.detail["node_id"] == agent.node_id


def test_the_database_refuses_to_change_or_delete_a_record(fleet):
    fleet.client.list_nodes()
    fleet.client.verify_audit_log()
    engine = database(fleet)
    try:
        for statement in (
            "UPDATE audit_records SET principal = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_records WHERE seq = 1",
        ):
            with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert fleet.client.verify_audit_log().ok


def tamper(fleet, *statements):
    """Run SQL on the stopped server's database, past the append-only triggers, and
    start the server again: nothing is written while the rows are changed."""
    fleet.server.stop()
    engine = database(fleet)
    try:
        drop_append_only(engine)
        with engine.begin() as conn:
            newest = conn.execute(text("SELECT max(seq) FROM audit_records")).scalar_one()
            for statement in statements:
                conn.execute(text(statement.format(newest=newest)))
    finally:
        engine.dispose()
    fleet.server.start()
    return newest


def test_verify_names_the_first_altered_record(fleet):
    for _ in range(5):
        fleet.client.list_nodes()
    assert fleet.client.verify_audit_log().ok
    tamper(
        fleet,
        "UPDATE audit_records SET status = 999 WHERE seq = 4",
        "UPDATE audit_records SET principal = 'mallory' WHERE seq = 6",
    )
    verdict = fleet.client.verify_audit_log()
    assert (verdict.ok, verdict.problem, verdict.first_bad_seq) == (False, "altered", 4)
    assert "Record 4 of the audit log was altered" in verdict.message
    done = cli(fleet, "audit", "verify")
    assert done.returncode == 1 and "Record 4 of the audit log was altered" in done.stderr


def test_verify_names_the_first_deleted_record_even_the_newest(fleet):
    for _ in range(5):
        fleet.client.list_nodes()
    newest = tamper(fleet, "DELETE FROM audit_records WHERE seq = {newest}")
    verdict = fleet.client.verify_audit_log()
    assert (verdict.ok, verdict.problem, verdict.first_bad_seq) == (False, "missing", newest)
    assert f"the log ends at record {newest - 1}" in verdict.message
    tamper(fleet, "DELETE FROM audit_records WHERE seq = 2")
    verdict = fleet.client.verify_audit_log()
    assert (verdict.problem, verdict.first_bad_seq) == ("missing", 2)
    assert "Record 2 of the audit log is missing" in verdict.message


def test_export_is_json_lines_that_verify_offline(fleet, tmp_path):
    for _ in range(3):
        fleet.client.list_nodes()
    done = cli(fleet, "audit", "export")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    records, head = lines[:-1], lines[-1]["head"]  # the export ends with its signed head
    assert (
        [r["seq"] for r in records]
        == list(range(1, len(records) + 1))
        == [*range(head["from_seq"], head["seq"] + 1)]
    )
    assert {"hash", "prev_hash", "principal", "action", "status"} <= set(lines[0])
    export = tmp_path / "audit.jsonl"
    export.write_text(done.stdout)
    good = cli(fleet, "audit", "verify", "--file", str(export), "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    lines[1]["status"] = 500
    export.write_text("".join(json.dumps(r) + "\n" for r in lines))
    bad = cli(fleet, "audit", "verify", "--file", str(export), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["first_bad_seq"] == 2
    listed = cli(fleet, "audit", "list", "--since", "1h", "--principal", "admin", "--json")
    assert listed.returncode == 0 and all(
        r["principal"] == "admin" for r in json.loads(listed.stdout)
    )
    table = cli(fleet, "audit", "list", "--action", "fleetrun:ListNodes")
    assert "fleetrun:ListNodes" in table.stdout


def test_a_principal_over_its_rate_gets_429_with_retry_after_and_others_go_on(tmp_path):
    env = {"FLEETRUN_RATE_LIMIT_PER_S": "2", "FLEETRUN_RATE_LIMIT_BURST": "4"}
    with running_fleet(tmp_path, env=env) as f:
        admin = f.client
        admin.create_principal("script")
        admin.attach("script", role="Reader")
        token = admin.create_token("script").token
        answers = [call(f, "/v1/nodes", token=token) for _ in range(12)]
        limited = [r for r in answers if r.status_code == 429]
        assert limited, [r.status_code for r in answers]
        first = limited[0]
        assert int(first.headers["retry-after"]) >= 1
        assert first.json()["error"]["type"] == "LimitExceeded"
        assert "script is over its request rate (2 per second)" in first.json()["error"]["message"]
        time.sleep(1.5)  # let the admin's own bucket refill after the setup calls
        assert call(f, "/v1/whoami").status_code == 200  # another principal goes on
        time.sleep(int(first.headers["retry-after"]))
        assert call(f, "/v1/nodes", token=token).status_code == 200
        with Client(f.server.url, token) as client:
            caught = _first_error(lambda: [client.list_nodes() for _ in range(20)])
        assert isinstance(caught, LimitExceededError) and caught.retry_after_s is not None
        time.sleep(1.5)
        statuses = [r.status for r in admin.list_audit_records(principal="script", limit=100)]
        assert 429 in statuses


def _first_error(work):
    try:
        work()
    except Exception as exc:
        return exc
    return None


def test_a_denied_reader_cannot_touch_the_audit_log(fleet):
    fleet.client.create_principal("blind")
    token = fleet.client.create_token("blind").token
    with Client(fleet.server.url, token) as client:
        with pytest.raises(AccessDeniedError):
            client.list_audit_records()
        with pytest.raises(AccessDeniedError):
            list(client.export_audit_records())
        with pytest.raises(AccessDeniedError):
            client.verify_audit_log()


def test_key_rotations_and_refused_handshakes_are_recorded(fleet):
    agent = fleet.add_agent()
    old = (agent.state_dir / "key.pem").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "rotate-key", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    agent.stop()
    (agent.state_dir / "key.pem").write_bytes(old)  # a stolen, retired key
    agent.start()
    resource = f"frn:fleetrun:node/{agent.node_id}"

    def refused():
        found = fleet.client.list_audit_records(limit=1000)
        return [r for r in found if r.action == "agent:Connect" and r.decision == "deny"]

    denied = wait_for(refused, timeout_s=60, what="a refused handshake on record")[0]
    assert denied.resource == resource and denied.detail["reason"] == "bad signature"
    [rotation] = fleet.client.list_audit_records(action="agent:RotateKey")
    assert (rotation.resource, rotation.decision) == (resource, "allow")
    agent.stop()
