"""The README works as written: after `make up` (scripts/devstack.py, a real server and
agent) and `source .fleetrun/env`, its shell block and its tour run in a plain shell
whose PATH does not hold the virtual environment, each command exiting 0."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from fleetrun.sdk import Client
from tests.harness import PYTHON, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "devstack.py")
README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> list[str]:
    """The lines of the first sh block after `heading`."""
    start = README.index(heading)
    body = README[README.index("```sh\n", start) + 6 :]
    return body[: body.index("```")].splitlines()


def _commands(lines: list[str]) -> list[str]:
    """Shell commands: comments dropped, continued lines joined, a here-document kept
    with the command that reads it."""
    commands: list[str] = []
    heredoc: str | None = None
    for line in lines:
        if heredoc is not None:
            commands[-1] += "\n" + line
            if line == heredoc:
                heredoc = None
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1] + " " + line.strip()
        else:
            commands.append(line)
        marker = re.search(r"<<'(\w+)'", line)
        if marker:
            heredoc = marker.group(1)
    return commands


@pytest.fixture
def stack(tmp_path):
    state = tmp_path / "devstack"
    env = {**os.environ, "FLEETRUN_PORT": str(free_port()), "FLEETRUN_DEVSTACK_DIR": str(state)}
    try:
        up = subprocess.run(
            [PYTHON, SCRIPT, "up"], env=env, capture_output=True, text=True, timeout=170
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert (
            "source .fleetrun/env" in up.stdout
            and "Then try:                 fleetrun" in up.stdout
        )
        yield state
    finally:
        subprocess.run([PYTHON, SCRIPT, "down"], env=env, capture_output=True, timeout=60)
        for name in ("agent", "server"):  # never leave a process behind
            pid_file = state / f"{name}.pid"
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.timeout(600)
def test_the_readme_runs_as_written_after_sourcing_the_env_file(stack, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shell_env = {  # a login shell's, without the virtual environment or any login file
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
    }

    def run(command: str) -> subprocess.CompletedProcess[str]:
        script = command.replace("source .fleetrun/env", f"source {stack / 'env'}")
        return subprocess.run(
            ["bash", "-ec", f"source {stack / 'env'}\n{script}"],
            cwd=work,
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    plain = subprocess.run(
        ["bash", "-c", "fleetrun --version"], env=shell_env, capture_output=True, text=True
    )
    assert plain.returncode == 127  # not on PATH before the env file is sourced

    shell = _commands(_block_after("To use them from your shell"))
    assert shell[0].startswith("source .fleetrun/env")
    done = run("\n".join(shell))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local" in done.stdout and "Success on 1 node(s)" in done.stdout

    env_text = (stack / "env").read_text()
    token = re.search(r"FLEETRUN_TOKEN=(\S+)", env_text).group(1)
    url = re.search(r"FLEETRUN_SERVER=(\S+)", env_text).group(1)
    tour = _commands(_block_after("## A tour"))
    assert tour[-1].startswith("fleetrun events tail")  # runs until Ctrl-C: not run here
    with Client(url, token) as client:
        (local,) = client.list_nodes()
        for command in tour[:-1]:
            if "COMMAND_ID" in command:
                latest = client.list_commands(limit=1)[0].id
                command = command.replace("COMMAND_ID", latest)
            command = command.replace("NODE_ID", local.id)
            done = run(command)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr and "Warning" not in done.stderr
        assert [r.name for r in client.list_rules()] == ["on-failure"]
