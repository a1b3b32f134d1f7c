"""Operating the server safely, where the subject is the API and the CLI (the server
process itself is tests/e2e/test_sec_server_ops.py): no bearer token over plain HTTP to
another host, unauthenticated floods throttled and summed up in the audit log, the last
administrator credential kept, and a way back in when it is lost."""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetrun.core.errors import ConflictError
from tests.inprocess import App, run_cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- no bearer token over plain HTTP to another host ----------------------------------


def test_the_cli_will_not_send_its_token_over_plain_http_to_another_host(app):
    env = {"FLEETRUN_CONFIG": "/nonexistent", "FLEETRUN_TOKEN": app.token}
    for args in (
        ["nodes", "list", "--server", "http://10.1.2.3:8470"],
        ["--server", "http://fleet.example.invalid:8470", "whoami"],
        ["login", "--server", "http://10.1.2.3:8470", "--token", "frt_x"],
    ):
        done = run_cli(*args, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "plain HTTP to a host that is not this machine" in done.stderr
    # loopback over http needs no flag
    for server in (app.url, "http://localhost:8470"):
        assert app.cli("whoami", "--server", server, env=env).returncode == 0


# -- the last administrator credential, and the way back in ---------------------------

LOCKOUT = "would leave no administrator with a working token"


def test_the_last_administrator_token_cannot_be_revoked(app):
    client = app.client
    [first] = [t for t in client.list_tokens("admin") if t.active]
    with pytest.raises(ConflictError, match=LOCKOUT):
        client.revoke_token(first.id)
    assert client.whoami().principal == "admin"  # still works: nothing was changed
    done = app.cli("tokens", "revoke", first.id, env={"FLEETRUN_CONFIG": "/nonexistent"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert LOCKOUT in done.stderr and len(done.stderr.strip().splitlines()) == 1

    # With another administrator token, the first one may go; then the other may not.
    second = client.create_token("admin", description="spare")
    assert client.revoke_token(first.id).active is False
    spare = app.client_for(second.token)
    with pytest.raises(ConflictError, match=LOCKOUT):
        spare.revoke_token(second.id)
    # Tokens of principals that cannot do everything come and go freely.
    spare.create_principal("reader")
    spare.attach("reader", role="Reader")
    reader = spare.create_token("reader")
    assert spare.revoke_token(reader.id).active is False
    # Another administrator (by the Administrator role) holds the way in...
    spare.create_principal("ops")
    spare.attach("ops", role="Administrator")
    ops_token = spare.create_token("ops")
    assert spare.revoke_token(second.id).active is False
    ops = app.client_for(ops_token.token)
    # ...and so may not lose its role, nor be deleted, nor lose its last token.
    with pytest.raises(ConflictError, match=LOCKOUT):
        ops.detach("ops", role="Administrator")
    with pytest.raises(ConflictError, match=LOCKOUT):
        ops.delete_principal("ops")
    with pytest.raises(ConflictError, match=LOCKOUT):
        ops.revoke_token(ops_token.id)
    assert ops.whoami().principal == "ops"


def test_reset_admin_token_gives_the_administrator_a_way_back_in(app):
    """The admin.token file is lost and no other administrator exists: the command,
    run on the server's machine beside the running server, makes a new token."""
    data = app.data_dir
    old = app.token
    (data / "admin.token").unlink()
    args = ["server", "reset-admin-token", "--data-dir", str(data)]
    args += ["--database-url", app.db.url]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("frt_") and token != old
    assert (data / "admin.token").read_text().strip() == token
    assert mode(data / "admin.token") == 0o600
    client = app.client_for(token)
    assert client.whoami().principal == "admin"
    [record] = client.list_audit_records(action="fleetrun:ResetAdminToken")
    assert record.principal == "admin" and record.kind == "local"
    assert client.verify_audit_log().ok
    app.restart()  # the server starts with the new file as it is
    assert app.token == token
    assert app.client_for(token).whoami().principal == "admin"


def test_reset_admin_token_without_a_database_says_what_to_give(tmp_path):
    done = run_cli("server", "reset-admin-token", "--data-dir", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "No database in" in done.stderr and "--data-dir" in done.stderr
    assert not (tmp_path / "nothing").exists()


# -- unauthenticated floods: throttled per address, summed up in the audit log ---------


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[App]:
    a = App(
        tmp_path,
        unauthenticated_rate_per_s=1.0,
        unauthenticated_burst=20,
        audit_failure_window_s=3.0,
    ).start()
    try:
        yield a
    finally:
        a.close()


def test_unauthenticated_requests_are_throttled_per_address_and_summed_up_in_the_audit_log(
    throttled,
):
    app = throttled
    url = "/v1/nodes"
    failures: Counter[int] = Counter()
    with app.http_from("127.0.0.1") as http:
        for i in range(300):
            headers = {"authorization": "Bearer frt_wrong"} if i % 2 else {}
            response = http.get(url, headers=headers)
            failures[response.status_code] += 1
        assert set(failures) == {401, 429}, failures
        assert 20 <= failures[401] < 60 and failures[429] > 200
        refused = http.get(url, headers={"authorization": "Bearer frt_wrong"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        message = refused.json()["error"]["message"]
        assert "Too many requests without a valid API token from 127.0.0.1" in message
        failures[429] += 1
        # Another address is not held back for this one's failures.
        with app.http_from("127.0.0.2") as other:
            assert other.get(url).status_code == 401
        # While held back, even a valid token waits (no oracle for guessed tokens)...
        valid = {"authorization": f"Bearer {app.token}"}
        first = http.get(url, headers=valid).status_code
        failures[first] += first == 429
        # ...and passes once the bucket has refilled a little.
        app.advance(int(refused.headers["retry-after"]))
        through = http.get(url, headers=valid).status_code
        failures[through] += through == 429
        assert through == 200
    expected = failures[401] + failures[429]

    app.advance(3.0)  # the failure window ends: its summary is written
    records = [
        r
        for r in app.client.list_audit_records(limit=1000)
        if r.principal is None and r.source_ip == "127.0.0.1" and r.kind == "request"
    ]
    # a record as it was counts one request; a summary, its repeats
    assert sum(r.detail.get("repeated", 1) for r in records) == expected
    # not one per request: a few windows (more when a loaded machine makes the requests
    # span more of them), each a record and a summary
    assert len(records) <= 20, len(records)
    summaries = [r for r in records if "repeated" in r.detail]
    assert summaries and all(set(r.detail["statuses"]) <= {"401", "429"} for r in summaries)
    [first_record] = [r for r in records if r.status == 401 and "repeated" not in r.detail][:1]
    assert first_record.path == "/v1/nodes" and first_record.method == "GET"
