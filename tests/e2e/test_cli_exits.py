"""The exit codes of `fleetrun` as a process, where the kind of failure needs a real
server: one behind TLS whose CA the CLI was not given, and none at all. (The others,
usage, access and a node's failure, are in tests/api/test_cli.py and
tests/api/test_cli_wait.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fleetrun.cli.exits import Exit


def fleetrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        capture_output=True,
        text=True,
        env={**base, "FLEETRUN_CONFIG": os.devnull, **env},
        timeout=60,
    )


@pytest.fixture
def tls_fleet(tmp_path):
    from tests.harness import Fleet

    f = Fleet(tmp_path, tls=True).start()
    try:
        yield f
    finally:
        f.close()


def test_an_untrusted_certificate_names_ca_file_and_its_variable(tls_fleet):
    env = {"FLEETRUN_SERVER": tls_fleet.server.url, "FLEETRUN_TOKEN": tls_fleet.server.token}
    done = fleetrun("nodes", "list", env=env)
    assert done.returncode == Exit.NO_SERVER, done.stderr
    assert done.stderr.startswith("fleetrun: The certificate of the fleetrun server at")
    assert "--ca-file or FLEETRUN_CA_FILE" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    ca = str(tls_fleet.server.ca_file)
    assert fleetrun("nodes", "list", "--ca-file", ca, env=env).returncode == Exit.OK
    assert fleetrun("nodes", "list", env={**env, "FLEETRUN_CA_FILE": ca}).returncode == Exit.OK


def test_a_server_that_is_not_there_is_its_own_exit_code():
    done = fleetrun(
        "nodes", "list", env={"FLEETRUN_SERVER": "http://127.0.0.1:9", "FLEETRUN_TOKEN": "frt_x"}
    )
    assert done.returncode == Exit.NO_SERVER and "Cannot reach the fleetrun server" in done.stderr
    usage = fleetrun("nodes", "lisst", env={})
    assert usage.returncode == Exit.USAGE and "No such command" in usage.stderr
