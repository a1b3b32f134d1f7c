"""The container image's parts that run outside a container engine too: its health
check against real servers (HTTPS with the server's own CA, and plain HTTP), and the
promises the Dockerfile and the compose file make (non-root, data on a volume, health
on /readyz). CI builds the image itself where an engine answers (.ci/run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import ServerProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = ROOT / "packaging" / "docker" / "healthcheck.py"


def _healthcheck(port: int) -> int:
    done = subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={**os.environ, "FLEETRUN_PORT": str(port)},
        capture_output=True,
        timeout=30,
    )
    return done.returncode


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_the_health_check_passes_on_a_ready_server_and_fails_without_one(tmp_path, tls):
    server = ServerProcess(tmp_path, tls=tls).start()
    try:
        assert _healthcheck(server.port) == 0
    finally:
        server.close()
    assert _healthcheck(server.port) == 1
    assert _healthcheck(free_port()) == 1


def _instructions() -> dict[str, list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.setdefault(word.upper(), []).append(re.sub(r"\s+", " ", rest))
    return found


def test_the_image_runs_unprivileged_with_its_data_on_a_volume_and_checks_readiness():
    found = _instructions()
    assert found["USER"] == ["fleetrun"]
    data_dir = re.search(r"FLEETRUN_DATA_DIR=(\S+)", " ".join(found["ENV"]))
    assert data_dir is not None and found["VOLUME"] == [f'["{data_dir[1]}"]']
    [check] = found["HEALTHCHECK"]
    assert "/usr/local/bin/fleetrun-healthcheck" in check
    assert any(
        "packaging/docker/healthcheck.py /usr/local/bin/fleetrun-healthcheck" in c
        for c in found["COPY"]
    )
    assert "/readyz" in HEALTHCHECK.read_text()
    assert found["ENTRYPOINT"] == ['["fleetrun", "server"]']


def test_the_compose_file_runs_the_server_on_postgresql_and_one_agent():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "server", "agent"}
    server = services["server"]
    assert server["environment"]["FLEETRUN_DATABASE_URL"].startswith(
        "postgresql+psycopg://fleetrun:"
    )
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "server" in server["command"][server["command"].index("--tls-san") + 1]
    agent = services["agent"]
    assert agent["depends_on"]["server"]["condition"] == "service_healthy"
    assert "server-data:/server-data:ro" in agent["volumes"]
    assert (ROOT / "packaging" / "docker" / "demo-agent.sh").exists()


def test_the_compose_agent_enrols_itself_once_and_runs(tmp_path):
    """The compose file's agent script, against a real server with its own CA: it makes
    an activation with the admin token, registers and runs; started again, it keeps its
    identity."""
    server = ServerProcess(tmp_path, tls=True).start()
    state = tmp_path / "agent"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DEMO_SERVER": server.url,
        "DEMO_SERVER_DATA": str(server.data_dir),
        "FLEETRUN_AGENT_STATE_DIR": str(state),
        "AGENT_NAME": "compose01",
    }
    script = ROOT / "packaging" / "docker" / "demo-agent.sh"
    client = server.client()
    try:
        for _ in range(2):
            with (tmp_path / "agent.log").open("ab") as log:
                agent = subprocess.Popen(
                    ["/bin/sh", str(script)], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                wait_for(
                    lambda: [n for n in client.list_nodes() if n.ping_status == "Online"],
                    what="the compose agent online",
                )
            finally:
                agent.terminate()
                agent.wait(30)
            wait_for(
                lambda: not [n for n in client.list_nodes() if n.ping_status == "Online"],
                what="the compose agent gone",
            )
        [node] = client.list_nodes()
        assert node.name == "compose01" and node.tags == {"env": "compose"}
    finally:
        client.close()
        server.close()
