"""`fleetrun rules test` as a process: a usage error is exit code 2 from the real binary.
(What it answers, offline, is in tests/api/test_cli_rules.py.)"""

from __future__ import annotations

import os
import subprocess
import sys


def cli(*args):
    """`fleetrun ARGS` with no server, no token and no login file: offline must not ask."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    env["FLEETRUN_CONFIG"] = os.devnull
    env["FLEETRUN_SERVER"] = "http://127.0.0.1:9"  # nothing listens there
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_both_files_are_required():
    done = cli("rules", "test", "--event-file", "e.json")
    assert done.returncode == 2  # a usage error, as click reports it
    assert "Missing option '--pattern-file'" in done.stderr
