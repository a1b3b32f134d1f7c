"""Operating the server safely: private files, no bearer token over plain HTTP to
another host, unauthenticated floods throttled and summed up in the audit log, the
last administrator credential kept, and a way back in when it is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from fleetrun.core.errors import ConflictError
from fleetrun.sdk import Client
from tests.harness import PYTHON, ServerProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- files are private (0700 directories, 0600 files) ---------------------------------


def test_the_data_dir_database_tokens_keys_and_output_are_private(fleet):
    """The harness makes the data dir 0755 before the server starts, as an older
    version did: the server tightens it."""
    agent = fleet.add_agent()
    command = fleet.client.send_command(script="echo private", node_ids=[agent.node_id])
    fleet.client.wait(command.id, timeout_s=60)
    data = fleet.server.data_dir
    assert mode(data) == 0o700
    files = [data / "admin.token", data / "secret.key"]
    if fleet.server.db is None or fleet.server.db.kind == "sqlite":
        files += [data / "fleetrun.db", data / "fleetrun.db-wal", data / "fleetrun.db-shm"]
    output = list((data / "output").rglob("*"))
    assert any(p.is_file() for p in output)
    for path in files + output:
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path} is {oct(mode(path))}"


def test_a_data_dir_left_readable_by_an_older_version_is_tightened(tmp_path):
    server = ServerProcess(tmp_path)
    server.data_dir.mkdir(parents=True, mode=0o755)
    (server.data_dir / "admin.token").write_text("frt_" + "x" * 43 + "\n")
    (server.data_dir / "admin.token").chmod(0o644)
    try:
        server.start()
        assert mode(server.data_dir) == 0o700
        assert mode(server.data_dir / "admin.token") == 0o600
    finally:
        server.close()


def test_make_up_writes_the_admin_token_env_file_for_its_user_only(tmp_path):
    state = tmp_path / "devstack"
    env = {**os.environ, "FLEETRUN_PORT": str(free_port()), "FLEETRUN_DEVSTACK_DIR": str(state)}
    script = str(ROOT / "scripts" / "devstack.py")
    try:
        done = subprocess.run(
            [PYTHON, script, "up"], env=env, capture_output=True, text=True, timeout=170
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert mode(state) == 0o700
        assert mode(state / "env") == 0o600
        assert "FLEETRUN_TOKEN=frt_" in (state / "env").read_text()
    finally:
        subprocess.run([PYTHON, script, "down"], env=env, capture_output=True, timeout=60)
        for name in ("agent", "server"):  # never leave a process behind
            pid_file = state / f"{name}.pid"
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


# -- no bearer token over plain HTTP to another host ----------------------------------


def _own_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_server_refuses_plain_http_off_loopback_without_insecure_http(tmp_path):
    done = _cli(
        "server",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "without TLS" in done.stderr and "--insecure-http" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing was made


def test_off_loopback_the_server_serves_tls_or_plain_http_when_told(tmp_path):
    tls = ServerProcess(tmp_path / "tls", tls=True, extra_args=["--host", "0.0.0.0"])
    try:
        tls.start()  # TLS needs no flag
    finally:
        tls.close()
    plain = ServerProcess(tmp_path / "plain", extra_args=["--host", "0.0.0.0", "--insecure-http"])
    try:
        plain.start()
        assert "--insecure-http" in plain.log_path.read_text()  # and it says so in its log
        address = _own_address()
        if address is None:
            return
        url = f"http://{address}:{plain.port}"
        env = {
            "FLEETRUN_TOKEN": plain.token,
            "FLEETRUN_SERVER": url,
            "FLEETRUN_CONFIG": "/nonexistent",
        }
        refused = _cli("whoami", env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert "plain HTTP" in refused.stderr and "--insecure" in refused.stderr
        assert _cli("--insecure", "whoami", env=env).returncode == 0
        assert _cli("whoami", env={**env, "FLEETRUN_INSECURE": "1"}).returncode == 0
    finally:
        plain.close()


def test_the_cli_will_not_send_its_token_over_plain_http_to_another_host(fleet):
    env = {"FLEETRUN_CONFIG": "/nonexistent", "FLEETRUN_TOKEN": fleet.server.token}
    for args in (
        ["nodes", "list", "--server", "http://10.1.2.3:8470"],
        ["--server", "http://fleet.example.invalid:8470", "whoami"],
        ["login", "--server", "http://10.1.2.3:8470", "--token", "frt_x"],
    ):
        done = _cli(*args, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "plain HTTP to a host that is not this machine" in done.stderr
    # loopback over http needs no flag
    for server in (fleet.server.url, f"http://localhost:{fleet.server.port}"):
        assert _cli("whoami", "--server", server, env=env).returncode == 0


# -- the last administrator credential, and the way back in ---------------------------

LOCKOUT = "would leave no administrator with a working token"


def test_the_last_administrator_token_cannot_be_revoked(fleet):
    client = fleet.client
    [first] = [t for t in client.list_tokens("admin") if t.active]
    with pytest.raises(ConflictError, match=LOCKOUT):
        client.revoke_token(first.id)
    assert client.whoami().principal == "admin"  # still works: nothing was changed
    done = _cli("tokens", "revoke", first.id, env=_env(fleet))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert LOCKOUT in done.stderr and len(done.stderr.strip().splitlines()) == 1

    # With another administrator token, the first one may go; then the other may not.
    second = client.create_token("admin", description="spare")
    assert client.revoke_token(first.id).active is False
    with Client(fleet.server.url, second.token) as spare:
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
    with Client(fleet.server.url, ops_token.token) as ops:
        # ...and so may not lose its role, nor be deleted, nor lose its last token.
        with pytest.raises(ConflictError, match=LOCKOUT):
            ops.detach("ops", role="Administrator")
        with pytest.raises(ConflictError, match=LOCKOUT):
            ops.delete_principal("ops")
        with pytest.raises(ConflictError, match=LOCKOUT):
            ops.revoke_token(ops_token.id)
        assert ops.whoami().principal == "ops"


def test_reset_admin_token_gives_the_administrator_a_way_back_in(fleet):
    """The admin.token file is lost and no other administrator exists: the command,
    run on the server's machine beside the running server, makes a new token."""
    data = fleet.server.data_dir
    old = fleet.server.token
    (data / "admin.token").unlink()
    args = ["server", "reset-admin-token", "--data-dir", str(data)]
    args += ["--database-url", fleet.server.db.url]
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("frt_") and token != old
    assert (data / "admin.token").read_text().strip() == token
    assert mode(data / "admin.token") == 0o600
    with Client(fleet.server.url, token) as client:
        assert client.whoami().principal == "admin"
        [record] = client.list_audit_records(action="fleetrun:ResetAdminToken")
        assert record.principal == "admin" and record.kind == "local"
        assert client.verify_audit_log().ok
    fleet.server.restart()  # the server starts with the new file as it is
    with Client(fleet.server.url, token) as client:
        assert client.whoami().principal == "admin"


def test_reset_admin_token_without_a_database_says_what_to_give(tmp_path):
    done = _cli("server", "reset-admin-token", "--data-dir", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "No database in" in done.stderr and "--data-dir" in done.stderr
    assert not (tmp_path / "nothing").exists()


def _env(fleet) -> dict[str, str]:
    return {
        "FLEETRUN_CONFIG": "/nonexistent",
        "FLEETRUN_SERVER": fleet.server.url,
        "FLEETRUN_TOKEN": fleet.server.token,
    }


# -- unauthenticated floods: throttled per address, summed up in the audit log ---------


def test_unauthenticated_requests_are_throttled_per_address_and_summed_up_in_the_audit_log(
    tmp_path,
):
    server = ServerProcess(
        tmp_path,
        env={
            "FLEETRUN_UNAUTHENTICATED_RATE_PER_S": "1",
            "FLEETRUN_UNAUTHENTICATED_BURST": "20",
            "FLEETRUN_AUDIT_FAILURE_WINDOW_S": "3",
        },
    )
    try:
        server.start()
        url = server.url + "/v1/nodes"
        failures = Counter()
        with httpx.Client() as http:
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
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
                assert other.get(url).status_code == 401
            # While held back, even a valid token waits (no oracle for guessed tokens)...
            valid = {"authorization": f"Bearer {server.token}"}
            first = http.get(url, headers=valid).status_code
            failures[first] += first == 429
            # ...and passes once the bucket has refilled a little.

            def through() -> bool:
                status = http.get(url, headers=valid).status_code
                failures[status] += status == 429
                return status == 200

            wait_for(through, timeout_s=30, what="the address to be let through again")
        expected = failures[401] + failures[429]

        def summed_up() -> list | None:
            with server.client() as admin:
                records = [
                    r
                    for r in admin.list_audit_records(limit=1000)
                    if r.principal is None and r.source_ip == "127.0.0.1" and r.kind == "request"
                ]
            # a record as it was counts one request; a summary, its repeats
            counted = sum(r.detail.get("repeated", 1) for r in records)
            return records if counted == expected else None

        records = wait_for(summed_up, timeout_s=30, what="the failures summed up")
        assert len(records) <= 8, len(records)  # not one per request
        summaries = [r for r in records if "repeated" in r.detail]
        assert summaries and all(set(r.detail["statuses"]) <= {"401", "429"} for r in summaries)
        [first] = [r for r in records if r.status == 401 and "repeated" not in r.detail][:1]
        assert first.path == "/v1/nodes" and first.method == "GET"
    finally:
        server.close()
