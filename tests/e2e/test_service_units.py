"""The systemd units of the server and the agent, rendered by their real commands:
hardened, free of what `systemd-analyze verify` objects to, and the agent's does not
restart an agent the server will never take."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetrun.agent.service import EXIT_TERMINAL
from tests.harness import Fleet

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=\n",
    "SystemCallFilter=@system-service",
    "StateDirectory=fleetrun\n",
)


def _fleetrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args], capture_output=True, text=True, timeout=60
    )


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args], capture_output=True, text=True, timeout=60
    )


def _verify(text: str, name: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` exits 0 even on lines it ignores: nothing may be said."""
    path = tmp_path / name
    path.write_text(text)
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_server_unit_runs_the_given_options_as_a_dedicated_user_hardened():
    done = _fleetrun(
        "server",
        "install-service",
        "--print",
        "--user",
        "fleetsvc",
        "--",
        "--host",
        "0.0.0.0",
        "--port",
        "9443",
        "--tls-self-signed",
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert (
        f"ExecStart={sys.executable} -m fleetrun server --data-dir /var/lib/fleetrun "
        "--host 0.0.0.0 --port 9443 --tls-self-signed\n"
    ) in text
    assert "User=fleetsvc\n" in text and "Group=fleetsvc\n" in text
    for line in HARDENING:
        assert line in text


def test_a_data_dir_outside_var_lib_is_the_one_writable_path(tmp_path):
    done = _fleetrun("server", "install-service", "--dry-run", "--data-dir", "/srv/fleet 100%")
    assert done.returncode == 0, done.stderr
    assert "ReadWritePaths=/srv/fleet 100%%\n" in done.stdout
    assert "StateDirectory" not in done.stdout
    assert "--data-dir '/srv/fleet 100%%'" in done.stdout


def test_install_service_writes_the_unit_and_says_what_to_run_next(tmp_path):
    done = _fleetrun(
        "server",
        "install-service",
        "--unit-dir",
        str(tmp_path),
        "--user",
        "no-such-user-x",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    written = tmp_path / "fleetrun.service"
    assert data["unit"] == str(written) and written.read_text() == data["text"]
    assert oct(written.stat().st_mode & 0o777) == "0o644"
    assert data["user_exists"] is False
    assert data["next"][0].startswith("useradd --system") and "no-such-user-x" in data["next"][0]
    assert data["next"][-1] == "systemctl daemon-reload && systemctl enable --now fleetrun.service"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--", "--hots", "x"], "No such option '--hots'"),
        (["--", "--port", "eighty"], "not a valid integer"),
        (["--", "--data-dir", "/x"], "install-service's own --data-dir"),
        (["--data-dir", "relative/dir"], "must be an absolute path"),
        (["--environment-file", "server.env"], "environment file must be an absolute path"),
    ],
)
def test_bad_server_options_are_refused_at_install_time(args, message, tmp_path):
    done = _fleetrun("server", "install-service", "--unit-dir", str(tmp_path), *args)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in done.stderr
    assert not (tmp_path / "fleetrun.service").exists()


@needs_systemd_analyze
def test_systemd_accepts_the_server_unit(tmp_path):
    done = _fleetrun("server", "install-service", "--print", "--", "--host", "0.0.0.0")
    _verify(done.stdout, "fleetrun.service", tmp_path)


def test_the_agent_unit_links_its_server_and_does_not_restart_a_refused_agent(
    fleet: Fleet, tmp_path
):
    agent = fleet.add_agent(start=False)
    done = _agent("install-service", "--print", "--state-dir", str(agent.state_dir))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"Documentation={fleet.server.url}/docs\n" in text
    assert f"RestartPreventExitStatus={EXIT_TERMINAL}\n" in text
    assert "Restart=on-failure\n" in text
    assert f"-m fleetrun.agent run --state-dir {agent.state_dir.resolve()}\n" in text
    if SYSTEMD_ANALYZE is not None:
        _verify(text, "fleetrun-agent.service", tmp_path)


@needs_systemd_analyze
def test_systemd_accepts_the_unit_of_an_agent_not_yet_registered(tmp_path):
    done = _agent("install-service", "--print", "--json", "--state-dir", str(tmp_path / "new"))
    assert done.returncode == 0, done.stderr
    text = json.loads(done.stdout)["text"]
    assert "Documentation=" not in text
    _verify(text, "fleetrun-agent.service", tmp_path)
