"""Enrolment: an activation is traded for a node identity, once per registration, by the
agent's own `register` command. (Activation options are in tests/api/test_enrolment.py.)"""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from tests.harness import AgentProcess, wait_for


def _register(fleet, tmp_path, name, activation_id, code, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "register",
            "--state-dir",
            str(tmp_path / name),
            "--server",
            fleet.server.url,
            "--activation-id",
            activation_id,
            "--activation-code",
            code,
            "--name",
            name,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_register_makes_a_node_with_facts_tags_and_a_private_key_that_stays(fleet, tmp_path):
    activation = fleet.client.create_activation(tags={"env": "prod"}, registration_limit=1)
    done = _register(fleet, tmp_path, "web", activation.id, activation.code, "--tag", "role=web")
    assert done.returncode == 0, done.stderr
    identity = json.loads((tmp_path / "web" / "identity.json").read_text())
    node = fleet.client.get_node(identity["node_id"])
    assert node.id.startswith("n-") and len(node.id) == 19
    assert node.tags == {"env": "prod", "role": "web"}
    assert node.platform and node.architecture and node.hostname and node.agent_version
    key = tmp_path / "web" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    seal_key = tmp_path / "web" / "seal.key"
    assert stat.S_IMODE(seal_key.stat().st_mode) == 0o600
    assert node.seal_public_key and len(node.seal_public_key) == 44
    assert (
        key.read_text()
        not in (fleet.server.data_dir / "fleetrun.db").read_bytes().decode("latin-1")
        if fleet.server.db.kind == "sqlite"
        else True
    )
    assert fleet.client.list_activations()[0].registrations_count == 1


@pytest.fixture(scope="module")
def refusing(tmp_path_factory):
    """One server for the refused registrations: each case makes its own activation and
    counts the nodes before and after."""
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("refusing")).start()
    try:
        yield f
    finally:
        f.close()


@pytest.mark.parametrize("case", ["wrong code", "unknown id", "exhausted", "expired"])
def test_bad_activations_are_refused_and_register_nothing(refusing, tmp_path, case):
    fleet = refusing
    activation = fleet.client.create_activation(
        registration_limit=1, expires_in_s=1 if case == "expired" else 3600
    )
    activation_id, code = activation.id, activation.code
    if case == "wrong code":
        code = "not-the-code-at-all"
    elif case == "unknown id":
        activation_id = "00000000-0000-4000-8000-000000000000"
    elif case == "exhausted":
        assert _register(fleet, tmp_path, "first", activation_id, code).returncode == 0
    elif case == "expired":
        wait_for(
            lambda: any(
                a.expired for a in fleet.client.list_activations() if a.id == activation_id
            ),
            timeout_s=5,
            what="the activation to expire",
        )
    before = len(fleet.client.list_nodes())
    done = _register(fleet, tmp_path, "web", activation_id, code)
    assert done.returncode == 1
    message = done.stderr.strip()
    assert message.startswith("fleetrun-agent: ") and "Traceback" not in done.stderr
    expected = {
        "wrong code": "id or code is wrong",
        "unknown id": "id or code is wrong",
        "exhausted": "registration limit of 1",
        "expired": "expired at",
    }[case]
    assert expected in message
    assert len(fleet.client.list_nodes()) == before
    assert not (tmp_path / "web" / "identity.json").exists()


def test_register_against_an_unreachable_server_says_so(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "register",
            "--state-dir",
            str(tmp_path / "a"),
            "--server",
            "http://127.0.0.1:9",
            "--activation-id",
            "x",
            "--activation-code",
            "y",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Cannot reach the server" in done.stderr and "Traceback" not in done.stderr


def test_a_second_registration_in_the_same_state_dir_needs_force(fleet, tmp_path):
    activation = fleet.client.create_activation(registration_limit=2)
    assert _register(fleet, tmp_path, "web", activation.id, activation.code).returncode == 0
    again = _register(fleet, tmp_path, "web", activation.id, activation.code)
    assert again.returncode == 1 and "--force" in again.stderr
    agent = AgentProcess(fleet.server, tmp_path / "web", "web")
    assert agent.state_dir.exists()
