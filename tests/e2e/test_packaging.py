"""The agent ships alone: its wheel in a fresh virtual environment, and the single-file
agent under the system Python, each register with a real server and run a command,
with none of the server's code or libraries there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.harness import AgentProcess, Fleet

# Builds and installs with pip (and pip's downloads) take minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("fleetrun.server", "fleetrun.cli", "fleetrun.sdk", "fastapi", "sqlalchemy", "httpx")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make agent`'s script, run into a directory of this module's own."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_agent.py"),
            "--out",
            str(out),
            "--build",
            str(out / "build"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def _clean_env() -> dict[str, str]:
    """This environment less what would let a child find the checkout's packages."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COVERAGE"))}


def _not_importable(python: list[str], env: dict[str, str]) -> list[str]:
    code = (
        "import importlib.util, sys\n"
        f"for name in {SERVER_SIDE!r}:\n"
        "    try:\n"
        "        found = importlib.util.find_spec(name) is not None\n"
        "    except ModuleNotFoundError:\n"
        "        found = False\n"
        "    print(name, found)\n"
    )
    done = subprocess.run(
        [*python, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return [line.split()[0] for line in done.stdout.splitlines() if line.endswith("False")]


def _run_a_command(fleet: Fleet, agent: AgentProcess) -> None:
    activation = fleet.client.create_activation(registration_limit=1)
    agent.register(activation.id, activation.code)
    agent.start()
    fleet.wait_online([agent])
    command = fleet.client.send_command(script="echo packaged $FLEETRUN_NODE_ID", all_nodes=True)
    assert fleet.client.wait(command.id, timeout_s=60).status == "Success"
    [inv] = fleet.client.list_invocations(command.id, details=True)
    assert inv.stdout == f"packaged {agent.node_id}\n"


def test_the_agent_wheel_alone_in_a_fresh_venv_registers_and_runs_a_command(
    built: Path, fleet: Fleet, tmp_path: Path
):
    [wheel] = built.glob("fleetrun_agent-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = _clean_env()
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in installed.splitlines()}
    assert {"fleetrun-agent", "msgspec", "websockets", "cryptography", "tomli-w", "click"} <= names
    assert not names & {"fleetrun", "fastapi", "sqlalchemy", "httpx", "uvicorn", "psycopg"}
    assert _not_importable([str(python), "-I"], env) == list(SERVER_SIDE)
    agent = AgentProcess(
        fleet.server,
        tmp_path / "node",
        "wheel01",
        command=[str(env_dir / "bin" / "fleetrun-agent")],
        env=env,
    )
    fleet.agents.append(agent)
    _run_a_command(fleet, agent)


def test_the_single_file_agent_runs_under_the_system_python_with_its_deps_beside(
    built: Path, fleet: Fleet, tmp_path: Path
):
    """-I -S: no PYTHON* variables, no site-packages at all: only the archive and the
    fleetrun-agent-deps directory beside it."""
    system_python = getattr(sys, "_base_executable", sys.executable)
    command = [system_python, "-I", "-S", str(built / "fleetrun-agent.pyz")]
    env = _clean_env()
    assert (built / "fleetrun-agent-deps").is_dir()
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0, version.stderr
    agent = AgentProcess(fleet.server, tmp_path / "node", "pyz01", command=command, env=env)
    fleet.agents.append(agent)
    _run_a_command(fleet, agent)
    # Its service unit starts the same archive.
    unit = subprocess.run(
        [*command, "install-service", "--print", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert unit.returncode == 0, unit.stderr
    assert f" {built / 'fleetrun-agent.pyz'} run --state-dir " in unit.stdout
    # Without its dependencies beside it, the archive says what is missing and where it looked.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "fleetrun-agent.pyz").write_bytes((built / "fleetrun-agent.pyz").read_bytes())
    missing = subprocess.run(
        [system_python, "-I", "-S", str(alone / "fleetrun-agent.pyz"), "--version"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "fleetrun-agent-deps" in missing.stderr and str(alone) in missing.stderr


def test_the_fleetrun_wheel_builds_with_a_current_setuptools_and_holds_its_data(
    tmp_path: Path,
):
    """The build backend is fetched afresh (build isolation): the newest setuptools that
    pyproject allows reads its license as an SPDX expression. Built from a copy: a
    build in the checkout writes there (build/, egg-info), where another suite may be
    building at the same time."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("fleetrun-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert b"License-Expression: Apache-2.0" in metadata
    assert {
        "fleetrun/py.typed",
        "fleetrun/server/store/migrations/script.py.mako",
        "fleetrun/server/app.py",
        "fleetrun/agent/cli.py",
    } <= names
