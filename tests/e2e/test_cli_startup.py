"""`fleetrun --help` and `--version` start fast because they import nothing they do
not show: not the SDK (httpx, pydantic), not rich, not one subcommand's module, not the
login file's parser. Checked on a real process's import list; the times themselves are
bench/cli.py's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("httpx", "pydantic", "rich", "fleetrun.sdk", "fleetrun.schemas", "tomllib")


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_help_and_version_import_no_subcommand_sdk_or_rich(flag):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fleetrun", flag],
        capture_output=True,
        text=True,
        timeout=60,
        # without the test run's coverage, which starts in every child and reads its
        # configuration (pyproject.toml) with tomllib: an operator's CLI does not
        env={k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")},
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == [], heavy
    commands = sorted(m for m in imported if m.startswith("fleetrun.cli."))
    assert commands == ["fleetrun.cli.base", "fleetrun.cli.exits", "fleetrun.cli.main"], commands
    if flag == "--help":
        assert "send" in done.stdout and "Run a script or a document on nodes" in done.stdout
