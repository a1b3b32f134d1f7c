"""The audit log, in process: every request recorded, append-only in the database, a hash
chain whose verification names the first record altered or deleted behind the server's
back, export that verifies offline, and a rate limit per principal. (Agent sessions and
key rotations, which need an agent, are in tests/e2e/test_audit.py.)"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from fleetrun.core.errors import AccessDeniedError, LimitExceededError
from fleetrun.sdk import Client
from tests.harness import wait_for
from tests.inprocess import BASE_URL, App


def database(app):
    """A direct connection to the app's database, as an intruder would have."""
    url = app.db.url
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return create_engine(url, **kwargs)


def drop_append_only(engine):
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_records_no_delete"))


def call(app, path, token=None, **headers):
    token = app.token if token is None else token
    if token:
        headers["authorization"] = f"Bearer {token}"
    return app.http.get(path, headers=headers)


def tamper(app, *statements):
    """Run SQL on the stopped app's database, past the append-only triggers, and start
    the app again: nothing is written while the rows are changed."""
    app.stop()
    engine = database(app)
    try:
        drop_append_only(engine)
        with engine.begin() as conn:
            newest = conn.execute(text("SELECT max(seq) FROM audit_records")).scalar_one()
            for statement in statements:
                conn.execute(text(statement.format(newest=newest)))
    finally:
        engine.dispose()
    app.start()
    return newest


def test_every_request_is_recorded_with_who_what_where_and_how_it_ended(app):
    admin = app.client
    assert call(app, "/v1/nodes", **{"x-request-id": "req-ok"}).status_code == 200
    assert (
        call(app, "/v1/nodes", token="frt_wrong", **{"x-request-id": "req-401"}).status_code == 401
    )
    admin.create_principal("nobody")
    token = admin.create_token("nobody").token
    assert call(app, "/v1/nodes", token=token, **{"x-request-id": "req-403"}).status_code == 403
    assert call(app, "/v1/commands/nope", **{"x-request-id": "req-404"}).status_code == 404
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


def test_the_database_refuses_to_change_or_delete_a_record(app):
    app.client.list_nodes()
    app.client.verify_audit_log()
    engine = database(app)
    try:
        for statement in (
            "UPDATE audit_records SET principal = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_records WHERE seq = 1",
        ):
            with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert app.client.verify_audit_log().ok


def test_verify_names_the_first_altered_record(app):
    for _ in range(5):
        app.client.list_nodes()
    assert app.client.verify_audit_log().ok
    tamper(
        app,
        "UPDATE audit_records SET status = 999 WHERE seq = 4",
        "UPDATE audit_records SET principal = 'mallory' WHERE seq = 6",
    )
    verdict = app.client.verify_audit_log()
    assert (verdict.ok, verdict.problem, verdict.first_bad_seq) == (False, "altered", 4)
    assert "Record 4 of the audit log was altered" in verdict.message
    done = app.cli("audit", "verify")
    assert done.returncode == 1 and "Record 4 of the audit log was altered" in done.stderr


def test_verify_names_the_first_deleted_record_even_the_newest(app):
    for _ in range(5):
        app.client.list_nodes()
    newest = tamper(app, "DELETE FROM audit_records WHERE seq = {newest}")
    verdict = app.client.verify_audit_log()
    assert (verdict.ok, verdict.problem, verdict.first_bad_seq) == (False, "missing", newest)
    assert f"the log ends at record {newest - 1}" in verdict.message
    tamper(app, "DELETE FROM audit_records WHERE seq = 2")
    verdict = app.client.verify_audit_log()
    assert (verdict.problem, verdict.first_bad_seq) == ("missing", 2)
    assert "Record 2 of the audit log is missing" in verdict.message


def test_export_is_json_lines_that_verify_offline(app, tmp_path):
    for _ in range(3):
        app.client.list_nodes()
    done = app.cli("audit", "export")
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
    good = app.cli("audit", "verify", "--file", str(export), "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True
    lines[1]["status"] = 500
    export.write_text("".join(json.dumps(r) + "\n" for r in lines))
    bad = app.cli("audit", "verify", "--file", str(export), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["first_bad_seq"] == 2
    listed = app.cli("audit", "list", "--since", "1h", "--principal", "admin", "--json")
    assert listed.returncode == 0 and all(
        r["principal"] == "admin" for r in json.loads(listed.stdout)
    )
    table = app.cli("audit", "list", "--action", "fleetrun:ListNodes")
    assert "fleetrun:ListNodes" in table.stdout


@pytest.fixture
def limited(tmp_path):
    a = App(tmp_path, rate_limit_per_s=2.0, rate_limit_burst=4).start()
    try:
        yield a
    finally:
        a.close()


def test_a_principal_over_its_rate_gets_429_with_retry_after_and_others_go_on(limited):
    """Waits for the buckets to refill (a state), never a fixed sleep."""
    admin = limited.client
    admin.create_principal("script")
    admin.attach("script", role="Reader")
    token = admin.create_token("script").token
    answers = [call(limited, "/v1/nodes", token=token) for _ in range(12)]
    limited_answers = [r for r in answers if r.status_code == 429]
    assert limited_answers, [r.status_code for r in answers]
    first = limited_answers[0]
    retry_after = int(first.headers["retry-after"])
    assert retry_after >= 1
    assert first.json()["error"]["type"] == "LimitExceeded"
    assert "script is over its request rate (2 per second)" in first.json()["error"]["message"]
    # another principal goes on, once its own bucket has refilled after the setup calls
    wait_for(
        lambda: call(limited, "/v1/whoami").status_code == 200,
        timeout_s=5,
        interval_s=0.5,
        what="the admin's bucket",
    )
    wait_for(
        lambda: call(limited, "/v1/nodes", token=token).status_code == 200,
        timeout_s=retry_after + 5,
        interval_s=0.5,
        what="the script's bucket, after Retry-After",
    )
    client = Client(BASE_URL, token, http=limited.http, retries=0)  # the 429 itself
    caught = _first_error(lambda: [client.list_nodes() for _ in range(20)])
    assert isinstance(caught, LimitExceededError) and caught.retry_after_s is not None
    statuses = wait_for(
        lambda: [r.status for r in admin.list_audit_records(principal="script", limit=100)],
        timeout_s=10,
        interval_s=0.5,
        what="the script's records (the admin's bucket refilling)",
    )
    assert 429 in statuses


def _first_error(work):
    try:
        work()
    except Exception as exc:
        return exc
    return None


def test_a_denied_reader_cannot_touch_the_audit_log(app):
    app.client.create_principal("blind")
    token = app.client.create_token("blind").token
    client = app.client_for(token)
    with pytest.raises(AccessDeniedError):
        client.list_audit_records()
    with pytest.raises(AccessDeniedError):
        list(client.export_audit_records())
    with pytest.raises(AccessDeniedError):
        client.verify_audit_log()


def test_a_nul_in_a_request_is_recorded_and_never_stops_the_log(app):
    """`%00` in a path or a query: PostgreSQL refuses NUL in text. The request gets a
    clear answer, its record is written with U+FFFD in the NUL's place, and the records
    after it are written too (the refused batch was tried again for ever, and nothing
    more was recorded: one request stopped the audit log)."""
    assert call(app, "/v1/nodes/ab%00cd", **{"x-request-id": "req-nul-path"}).status_code == 404
    anonymous = call(app, "/v1/nodes/x%00", token="", **{"x-request-id": "req-nul-anon"})
    assert anonymous.status_code == 401
    answer = call(app, "/v1/audit?action=x%00y", **{"x-request-id": "req-nul-query"})
    assert answer.status_code in (200, 400)  # SQLite compares a NUL; PostgreSQL cannot
    if answer.status_code == 400:
        assert "NUL character" in answer.json()["error"]["message"]
    with ThreadPoolExecutor(1) as pool:  # it waited for ever: fail instead
        listed = pool.submit(app.client.list_audit_records, limit=1000).result(timeout=30)
    records = {r.request_id: r for r in listed}
    assert records["req-nul-path"].path == "/v1/nodes/ab\ufffdcd"
    assert records["req-nul-anon"].path == "/v1/nodes/x\ufffd"
    assert records["req-nul-query"].status == answer.status_code
    assert app.client.verify_audit_log().ok
