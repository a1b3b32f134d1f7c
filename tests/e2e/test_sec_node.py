"""The node under bad input: a broken config.toml never stops the agent (it refuses
everything and says why until the file is repaired), `config set` never writes a file
it cannot read back, and the agent's CLI answers a bad path with a sentence."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from tests.harness import Fleet, wait_for

NOT_UTF8 = b"\xff\xfe[extensions]\nenabled = true\n"


@pytest.fixture(scope="module")
def node_fleet(tmp_path_factory):
    """One server for the module: each test breaks the configuration of an agent of its
    own, and sends commands to that node only."""
    f = Fleet(tmp_path_factory.mktemp("node")).start()
    try:
        yield f
    finally:
        f.close()


def agent_cli(state_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _run(fleet, agent, script):
    command = fleet.client.send_command(node_ids=[agent.node_id], script=script)
    fleet.client.wait(command.id, timeout_s=60)
    return fleet.client.get_invocation(command.id, agent.node_id)


def test_a_non_utf8_config_refuses_everything_until_config_clear_repairs_it(node_fleet, tmp_path):
    agent = node_fleet.add_agent()
    path = agent.state_dir / "config.toml"
    path.write_bytes(NOT_UTF8)
    marker = tmp_path / "ran"

    refused = _run(node_fleet, agent, f"touch {marker}")
    assert (refused.status, refused.status_detail) == ("Failed", "BlockedByLocalPolicy")
    assert "not UTF-8" in refused.message and not marker.exists()
    assert agent.proc is not None and agent.proc.poll() is None, agent.log_tail()

    # It starts again with the broken file, and keeps refusing.
    agent.restart()
    node_fleet.wait_online([agent])
    assert _run(node_fleet, agent, f"touch {marker}").status_detail == "BlockedByLocalPolicy"
    assert agent.proc.poll() is None and not marker.exists()
    assert "cannot be read" in agent.log_path.read_text() and "not UTF-8" in agent.log_tail()

    status = json.loads(agent_cli(agent.state_dir, "status", "--json").stdout)
    assert "not UTF-8" in status["config"] and "refuses everything" in status["config"]
    listed = agent_cli(agent.state_dir, "config", "list")
    assert listed.returncode == 1 and "Traceback" not in listed.stderr
    assert "not UTF-8" in listed.stderr and "config clear" in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1

    cleared = agent_cli(agent.state_dir, "config", "clear", "extensions.enabled")
    assert cleared.returncode == 0, cleared.stderr
    assert "config.toml.broken" in cleared.stderr
    assert (agent.state_dir / "config.toml.broken").read_bytes() == NOT_UTF8
    assert tomllib.loads(path.read_text()) == {}
    assert _run(node_fleet, agent, f"touch {marker}").status == "Success" and marker.exists()


def test_config_set_overwrites_a_file_that_is_not_toml(tmp_path):
    state = tmp_path / "agent"
    state.mkdir()
    (state / "config.toml").write_text("this is [not toml")
    done = agent_cli(state, "config", "set", "runcommand.max_timeout", "60")
    assert done.returncode == 0, done.stderr
    assert "not valid TOML" in done.stderr and "config.toml.broken" in done.stderr
    listed = json.loads(agent_cli(state, "config", "list", "--json").stdout)
    assert listed["runcommand.max_timeout"] == 60 and listed["extensions.enabled"] is True


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("runcommand.allowed_users", "svc@corp.example, host$", ["svc@corp.example", "host$"]),
        ("extensions.blocklist", "my.publisher/run-v2_x", ["my.publisher/run-v2_x"]),
    ],
)
def test_config_set_writes_toml_that_reads_back_as_set(tmp_path, key, value, expected):
    state = tmp_path / "agent"
    state.mkdir()
    done = agent_cli(state, "config", "set", key, value)
    assert done.returncode == 0, done.stderr
    section, _, name = key.partition(".")
    assert tomllib.loads((state / "config.toml").read_text())[section][name] == expected
    again = agent_cli(state, "config", "get", key, "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {key: expected}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("runcommand.allowed_users", "deploy\nroot"),
        ("runcommand.allowed_users", 'a"b\\c'),
        ("extensions.blocklist", "fleetrun/run\tShell\x7f"),
    ],
)
def test_config_set_refuses_control_characters_and_quotes_naming_the_key(tmp_path, key, value):
    """Such names are no user and no handler: refused with the key and what it takes,
    and the file stays as it was."""
    state = tmp_path / "agent"
    state.mkdir()
    assert agent_cli(state, "config", "set", "runcommand.max_timeout", "60").returncode == 0
    before = (state / "config.toml").read_bytes()
    done = agent_cli(state, "config", "set", key, value)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and f"{key} takes" in done.stderr
    assert (state / "config.toml").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (
            [
                "register",
                "--server",
                "http://127.0.0.1:9",
                "--activation-id",
                "x",
                "--activation-code",
                "y",
                "--state-dir",
                "/proc/nope",
            ],
            "Cannot make the state directory /proc/nope",
        ),
        (["install-service", "--unit-dir", "/proc/nope"], "Cannot write /proc/nope"),
        (["config", "list"], "not UTF-8"),
        (["config", "get", "extensions.enabled"], "not UTF-8"),
    ],
)
def test_agent_cli_answers_a_bad_path_or_file_with_one_sentence(tmp_path, args, fault):
    state = tmp_path / "agent"
    state.mkdir()
    (state / "config.toml").write_bytes(NOT_UTF8)
    if "--state-dir" not in args:
        args = [*args, "--state-dir", str(state)]
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and fault in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (state / "config.toml").read_bytes() == NOT_UTF8


def test_the_agent_notes_a_repaired_config_and_runs_again(node_fleet):
    """A file broken while the agent runs is noticed without a restart, and so is the
    repair."""
    agent = node_fleet.add_agent()
    (agent.state_dir / "config.toml").write_text("[extensions]\nenabled = maybe\n")
    assert "not valid TOML" in _run(node_fleet, agent, "true").message
    wait_for(
        lambda: "error" in node_fleet.client.get_node(agent.node_id).local_config,
        what="the server to show the broken configuration",
    )
    assert agent_cli(agent.state_dir, "config", "set", "extensions.enabled", "true").returncode == 0
    assert _run(node_fleet, agent, "echo back").stdout == "back\n"
