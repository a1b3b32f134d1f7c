"""Operating the server safely: private files, no bearer token over plain HTTP to
another host, unauthenticated floods throttled and summed up in the audit log, the
last administrator credential kept, and a way back in when it is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.harness import PYTHON, free_port

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
    from tests.harness import ServerProcess

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
