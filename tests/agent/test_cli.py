"""`fleetrun-agent` through its real entry point (`fleetrun.agent.cli:main`): where
--json and --state-dir may go, the exit codes, one sentence per mistake, and `status`
where no agent runs (tests/e2e/test_agent_status.py has it against a real one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from fleetrun.agent.lock import StateLock
from fleetrun.agent.state import Identity, StateDir
from fleetrun.agent.status import StatusFile


@pytest.mark.parametrize(
    "where",
    [
        ["--json", "--state-dir", "{d}", "config", "set", "runcommand.max_timeout", "90"],
        ["config", "--json", "--state-dir", "{d}", "set", "runcommand.max_timeout", "90"],
        ["config", "set", "runcommand.max_timeout", "90", "--json", "--state-dir", "{d}"],
        ["--state-dir", "{d}", "config", "set", "--json", "runcommand.max_timeout", "90"],
    ],
)
def test_json_and_state_dir_are_taken_on_the_group_and_on_every_command(agent, state, where):
    code, out, err = agent(*(a.replace("{d}", str(state)) for a in where))
    assert (code, err) == (0, "")
    assert json.loads(out) == {"runcommand.max_timeout": 90}
    assert tomllib.loads((state / "config.toml").read_text()) == {"runcommand": {"max_timeout": 90}}


@pytest.mark.parametrize(
    "command",
    [
        ["version"],
        ["status"],
        ["audit"],
        ["rotate-key"],
        ["install-service"],
        ["register"],
        ["run"],
        ["config", "list"],
        ["config", "get"],
        ["config", "clear"],
    ],
)
def test_every_command_says_it_takes_json_and_state_dir(agent, command):
    code, out, _ = agent(*command, "--help")
    assert code == 0 and "--json" in out and "--state-dir" in out


def test_the_state_dir_comes_from_the_environment_when_not_given(agent, state, monkeypatch):
    monkeypatch.setenv("FLEETRUN_AGENT_STATE_DIR", str(state))
    assert agent("config", "set", "extensions.enabled", "false")[0] == 0
    assert agent("config", "get", "extensions.enabled") == (0, "false\n", "")


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        ([], "Missing command"),
        (["bogus"], "No such command 'bogus'"),
        (["status", "--bogus"], "--bogus"),
        (["config", "set", "extensions.enabled"], "Missing argument 'VALUE'"),
        (["config", "set", "extensions.blocklist", "a/b", "--add", "--remove"], "--add and"),
        (["run", "--reconnect-max", "soon"], "'soon' is not a valid float"),
        (["run", "--containment", "jail"], "'jail' is not one of"),
        (["audit", "--limit", "ten"], "'ten' is not a valid integer"),
        (["register", "--server", "http://127.0.0.1:9"], "Missing option '--activation-id'"),
    ],
)
def test_bad_usage_exits_2_with_one_line_naming_the_help(agent, state, args, fault):
    code, out, err = agent(*args, "--state-dir", str(state)) if args else agent()
    assert code == 2 and out == ""
    assert err.startswith("fleetrun-agent: ") and fault in err and "--help" in err
    assert len(err.strip().splitlines()) == 1
    assert list(state.iterdir()) == []


def test_a_unique_prefix_of_a_long_option_stands_for_it_as_before(agent, state):
    """argparse took `--state` for `--state-dir`; scripts written then keep working."""
    code, out, err = agent("config", "set", "extensions.blocklist", "a/b", "--state", str(state))
    assert (code, err) == (0, "")
    code, out, _ = agent(
        "config", "set", "extensions.blocklist", "c/d", "--a", "--js", "--st", str(state)
    )
    assert code == 0 and json.loads(out) == {"extensions.blocklist": ["a/b", "c/d"]}
    code, out, err = agent("register", "--activation", "x", "--state-dir", str(state))
    assert code == 2 and "--activation" in err and len(err.strip().splitlines()) == 1


def test_version_as_a_flag_and_as_a_command(agent):
    code, out, _ = agent("--version")
    assert code == 0 and out.startswith("fleetrun-agent ")
    code, out, _ = agent("version", "--json")
    assert code == 0 and set(json.loads(out)) == {"agent", "protocol"}


def _register(state):
    StateDir(state).save_identity(Identity("n-0123456789abcdef0", "http://127.0.0.1:9", "web1"))


def test_status_of_an_agent_that_is_not_running_exits_3(agent, state):
    _register(state)
    # what an agent killed with SIGKILL leaves behind: a file that says "connected"
    StatusFile(state / "status.json", "http://127.0.0.1:9").connected("s-1")
    code, out, err = agent("status", "--json", "--state-dir", str(state))
    assert (code, err) == (3, "")
    data = json.loads(out)
    assert data["state"] == "not running" and data["running"] is False
    assert data["connected"] is False and data["session_id"] is None
    code, out, _ = agent("--state-dir", str(state), "status")
    assert (
        code == 3
        and "state: not running" in out
        and "running: no" in out
        and "node_id: n-0123456789abcdef0" in out
    )


def test_status_while_the_agent_starts_is_disconnected_and_not_the_old_file(agent, state):
    """The lock is held (here, by this process), the file is a previous agent's."""
    _register(state)
    (state / "status.json").write_text(
        json.dumps({"pid": 1, "server": "http://old", "connected": True, "since": 0.0})
    )
    lock = StateLock(state / "agent.lock")
    lock.acquire()
    try:
        code, out, _ = agent("status", "--json", "--state-dir", str(state))
    finally:
        lock.release()
    data = json.loads(out)
    assert code == 4 and data["state"] == "disconnected" and data["pid"] == os.getpid()
    assert data["server"] == "http://127.0.0.1:9" and data["connected_since"] is None


def test_status_of_an_unregistered_node_is_one_sentence(agent, state):
    code, out, err = agent("status", "--state-dir", str(state))
    assert code == 1 and out == "" and "is not registered" in err
    assert len(err.strip().splitlines()) == 1


def test_the_installed_entry_point_answers_a_usage_error_in_one_line(state):
    """The process boundary: `python -m fleetrun.agent`, exit code and stderr as a
    shell sees them."""
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun.agent", "config", "set", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("fleetrun-agent: Missing argument 'KEY'")
    assert len(done.stderr.strip().splitlines()) == 1
