"""Starting a server: the administrator's token, and settings that cannot work."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest


def test_first_start_writes_the_admin_token_for_its_owner_only(fleet):
    path = fleet.server.data_dir / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("frt_") and len(token) > 40
    fleet.server.restart()  # a restart keeps the same token
    assert (fleet.server.data_dir / "admin.token").read_text().strip() == token
    with fleet.server.client(token) as client:
        assert client.list_nodes() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database-url", "mysql://x/y"], "Database driver 'mysql' is not supported"),
        (["--database-url", "::nonsense::"], "is malformed"),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-self-signed", "--tls-key", "k.pem", "--tls-cert", "c.pem"], "not both"),
        (["--port", "eighty"], "is not a valid integer"),
    ],
)
def test_settings_that_cannot_work_are_refused_in_one_sentence(tmp_path, args, message):
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun", "server", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (1, 2), done
    assert message in done.stderr and "Traceback" not in done.stderr
