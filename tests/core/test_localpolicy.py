"""The node's local policy: the Arc agent's list precedence, run-as and timeout caps."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.localpolicy import LocalConfig, handler_refusal, parse_value, refusal

SHELL = "fleetrun/runShellScript"
PYTHON = "fleetrun/runPythonScript"
INFO = "fleetrun/getNodeInfo"


def cfg(**values):
    return LocalConfig({k.replace("__", "."): v for k, v in values.items()})


@pytest.mark.parametrize(
    ("config", "handler", "blocked_by"),
    [
        (cfg(), SHELL, None),  # no list: everything allowed
        (cfg(extensions__allowlist=[SHELL]), SHELL, None),  # in the allowlist
        (
            cfg(extensions__allowlist=[SHELL]),
            PYTHON,
            "extensions.allowlist does not include",
        ),  # not in it
        (cfg(extensions__blocklist=[SHELL]), SHELL, "extensions.blocklist includes"),
        (cfg(extensions__blocklist=[SHELL]), PYTHON, None),
        (
            cfg(extensions__allowlist=[SHELL], extensions__blocklist=[SHELL]),
            SHELL,
            "extensions.blocklist",
        ),  # both: blocked
        (cfg(extensions__allowlist=["FLEETRUN/RUNSHELLSCRIPT"]), SHELL, None),  # case-insensitive
        (cfg(extensions__allowlist=["Allow/None"]), SHELL, "Allow/None"),
        (cfg(extensions__enabled=False), SHELL, "extensions.enabled is false"),
        (cfg(extensions__enabled=False), INFO, "extensions.enabled is false"),
        (cfg(config__mode="monitor"), SHELL, "config.mode is monitor"),
        (cfg(config__mode="monitor"), INFO, None),
        (
            cfg(config__mode="monitor", extensions__allowlist=[SHELL]),
            SHELL,
            "config.mode is monitor",
        ),
    ],
)
def test_handler_precedence(config, handler, blocked_by):
    reason = handler_refusal(config, handler)
    if blocked_by is None:
        assert reason is None
    else:
        assert reason is not None and blocked_by in reason


@pytest.mark.parametrize(
    ("config", "run_as", "timeout", "blocked_by"),
    [
        (cfg(), [None], 3600, None),
        (cfg(), ["root"], 3600, None),  # the agent's own user
        (
            cfg(),
            ["nobody"],
            3600,
            "runcommand.allowed_users (empty (only root)) does not include 'nobody'",
        ),
        (cfg(runcommand__allowed_users=["nobody"]), ["nobody"], 3600, None),
        (
            cfg(runcommand__allowed_users=["nobody"]),
            [None, "daemon"],
            3600,
            "does not include 'daemon'",
        ),
        (cfg(runcommand__max_timeout=600), [None], 600, None),
        (cfg(runcommand__max_timeout=600), [None], 3600, "runcommand.max_timeout is 600 s"),
    ],
)
def test_run_as_and_timeout_caps(config, run_as, timeout, blocked_by):
    reason = refusal(
        config, handlers=[SHELL], run_as=run_as, own_user="root", execution_timeout_s=timeout
    )
    assert (reason is None) if blocked_by is None else (blocked_by in reason)


def test_monitor_mode_shows_its_allowlist():
    assert cfg(config__mode="monitor").effective()["extensions.allowlist"] == [INFO]


@pytest.mark.parametrize(
    ("key", "text", "fault"),
    [
        ("nope.key", "1", "is not a configuration key"),
        ("extensions.enabled", "maybe", "takes true or false"),
        ("runcommand.max_timeout", "-5", "whole number"),
        ("config.mode", "paranoid", "takes full or monitor"),
        ("extensions.allowlist", "runShellScript", "is not a handler name"),
        ("security.trusted_publishers", "not-a-key", "is not a publisher key"),
    ],
)
def test_bad_values_are_refused(key, text, fault):
    with pytest.raises(ValidationError, match=fault):
        parse_value(key, text)


def test_values_are_typed():
    assert parse_value("extensions.enabled", "FALSE") is False
    assert parse_value("runcommand.max_timeout", "600") == 600
    assert parse_value("extensions.blocklist", "a/b, c/d,") == ["a/b", "c/d"]
