"""`fleetrun-agent config set` checks each value against what its key allows, and can
never leave a configuration the agent cannot read back: nothing changes on disk unless
the new file reads back as meant."""

from __future__ import annotations

import json

import pytest

from fleetrun.agent import config as local_config
from fleetrun.agent.config import ConfigError
from fleetrun.core.localpolicy import LocalConfig


@pytest.mark.parametrize(
    ("key", "value", "fault"),
    [
        ("runcommand.max_timeout", "0", "runcommand.max_timeout takes a whole number"),
        ("runcommand.max_timeout", "-5", "runcommand.max_timeout takes a whole number"),
        ("runcommand.max_timeout", "²", "runcommand.max_timeout takes a whole number"),
        ("runcommand.max_timeout", "172801", "from 1 to 172800"),
        ("runcommand.max_timeout", "1e9", "runcommand.max_timeout takes a whole number"),
        ("extensions.enabled", "yes", "extensions.enabled takes true or false"),
        ("config.mode", "audit", "config.mode takes full or monitor"),
        ("runcommand.allowed_users", "root,bad user", "runcommand.allowed_users takes user"),
        ("runcommand.allowed_users", "a:b", "runcommand.allowed_users takes user"),
        ("extensions.allowlist", "fleetrun/run shell", "extensions.allowlist takes handler"),
        ("extensions.blocklist", "noslash", "extensions.blocklist: 'noslash' is not a handler"),
        ("security.trusted_publishers", "AAAA", "security.trusted_publishers: 'AAAA' is not"),
        ("extensions.blocklist", ",".join(f"p/t{i}" for i in range(257)), "at most 256"),
        ("no.such.key", "1", "'no.such.key' is not a configuration key"),
    ],
)
def test_config_set_refuses_a_bad_value_naming_the_key_and_changes_nothing(
    agent, state, key, value, fault
):
    assert (
        agent("config", "set", "runcommand.max_timeout", "900", "--state-dir", str(state))[0] == 0
    )
    before = sorted((p.name, p.read_bytes()) for p in state.iterdir())
    code, out, err = agent("config", "set", key, value, "--state-dir", str(state))
    assert code == 1 and out == "" and fault in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert sorted((p.name, p.read_bytes()) for p in state.iterdir()) == before


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("runcommand.max_timeout", "172800", 172800),
        ("runcommand.max_timeout", " 1 ", 1),
        ("extensions.enabled", "FALSE", False),
        ("runcommand.allowed_users", "deploy, svc@corp.example,host$", None),
        ("extensions.allowlist", "Allow/None", ["Allow/None"]),
    ],
)
def test_config_set_takes_what_each_key_allows(agent, state, key, value, expected):
    code, out, err = agent("config", "set", key, value, "--json", "--state-dir", str(state))
    assert code == 0, err
    written = json.loads(out)[key]
    if expected is None:
        expected = [v.strip() for v in value.split(",")]
    assert written == expected
    assert local_config.load(state / "config.toml").get(key) == expected


def test_a_config_that_would_not_read_back_is_never_written(state):
    """The last guard: whatever the checks before it let through, the text is read back
    with the agent's own reader before it replaces the file. A list item holding a comma
    reads back as two items (one of them no handler name)."""
    path = state / "config.toml"
    local_config.save(path, LocalConfig({"runcommand.max_timeout": 60}))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"would not read back.*nothing was changed"):
        local_config.save(path, LocalConfig({"extensions.allowlist": ["a,b/c"]}))
    assert path.read_bytes() == before and [p.name for p in state.iterdir()] == ["config.toml"]
    with pytest.raises(ConfigError, match="would read back differently"):
        local_config.save(path, LocalConfig({"extensions.allowlist": [" p/t "]}))
    assert path.read_bytes() == before and [p.name for p in state.iterdir()] == ["config.toml"]


def test_config_set_on_a_broken_file_keeps_it_aside_and_writes_a_good_one(agent, state):
    (state / "config.toml").write_text("not [toml")
    code, _, err = agent("config", "set", "extensions.enabled", "false", "--state-dir", str(state))
    assert code == 0 and "config.toml.broken" in err
    assert (state / "config.toml.broken").read_text() == "not [toml"
    assert local_config.load(state / "config.toml").get("extensions.enabled") is False
