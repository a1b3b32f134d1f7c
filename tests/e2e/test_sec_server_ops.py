"""Operating the server safely, where the subject is the server process: private files
(made by the process, tightened at startup, written by `make up`), and no plain HTTP
off loopback unless told. What the API and the CLI do about it (tokens over plain HTTP,
throttling, the last administrator, the way back in) is tests/api/test_sec_server_ops.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.harness import PYTHON, ServerProcess, free_port

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
