"""Which environment variables a caller may set: names that change how programs load
or run are refused, on the server and again on the node."""

from __future__ import annotations

import pytest

from fleetrun.core import envnames
from fleetrun.core.errors import ValidationError


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "BASH_ENV",
        "ENV",
        "PATH",
        "Path",  # Windows compares without case
        "IFS",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "CDPATH",
        "GLOBIGNORE",
        "BASH_FUNC_ls%%",
        "PYTHONWARNINGS",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "BROWSER",
        "PAGER",
        "EDITOR",
        "LESSOPEN",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_KEY_0",
        "OPENSSL_CONF",
        "MAKEFLAGS",
        "LUA_INIT",
        "HOME",
        "SHELL",
        "PSModulePath",
        "COR_PROFILER",
        "DOTNET_STARTUP_HOOKS",
        "ComSpec",
        "MALLOC_CHECK_",
        "TERMINFO",
    ],
)
def test_names_that_change_how_programs_load_or_run_are_refused(name):
    assert envnames.refusal(name) is not None
    assert envnames.refusal(name, caller=False) is not None
    with pytest.raises(ValidationError, match=r"cannot be set: .*; choose another name"):
        envnames.check([name], "Secret parameter")


@pytest.mark.parametrize(
    "name",
    ["service", "DB_PASSWORD", "TOKEN", "path_prefix", "env", "home_dir", "SSM_message",
     "NODE_NAME", "GIT_TOKEN", "LANG", "LC_ALL", "TZ", "USER", "commands"],
)  # fmt: skip
def test_ordinary_names_pass(name):
    assert envnames.refusal(name) is None


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a=b", "a b", "x" * 129])
def test_names_that_are_not_names_are_refused(name):
    assert "not a valid environment variable name" in (envnames.refusal(name) or "")


def test_names_fleetrun_sets_are_refused_to_callers_but_pass_when_fleetrun_derives_them():
    assert "set by fleetrun itself" in (envnames.refusal("FLEETRUN_P_x") or "")
    assert "set by fleetrun itself" in (envnames.refusal("FLEETRUN_COMMAND_ID") or "")
    assert envnames.refusal("FLEETRUN_P_x", caller=False) is None


@pytest.mark.parametrize(
    ("step_env", "secrets", "declared", "says"),
    [
        (["service"], [], None, None),
        (["service", "LD_PRELOAD"], [], None, "environment variable LD_PRELOAD"),
        (["FLEETRUN_P_service"], ["TOKEN"], None, None),
        ([], ["BASH_ENV"], None, "secret parameter BASH_ENV"),
        ([], ["FLEETRUN_NODE_ID"], None, "secret parameter FLEETRUN_NODE_ID"),
        (["who"], ["who"], ["who"], None),
        (["who"], ["TOKEN"], ["who"], "TOKEN is not a parameter of the signed document"),
        ([], ["PYTHONWARNINGS"], ["PYTHONWARNINGS"], "changes how programs load or run"),
    ],
)
def test_what_a_node_refuses(step_env, secrets, declared, says):
    reason = envnames.invocation_refusal(step_env, secrets, declared)
    if says is None:
        assert reason is None
    else:
        assert reason is not None and says in reason and reason.endswith(".")
