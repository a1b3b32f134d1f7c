"""A refusal from `fleetrun` as a process (`python -m fleetrun ...`, as an operator runs
it): one sentence on stderr and a non-zero exit, never a traceback. The rest of the
hostile input, through the same entry point in process, is in
tests/api/test_sec_cli_input.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_audit_verify_of_a_binary_file_is_one_sentence_from_the_process(tmp_path: Path) -> None:
    path = tmp_path / "export.bin"
    path.write_bytes(bytes(range(256)) * 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    env["FLEETRUN_CONFIG"] = os.devnull
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun", "audit", "verify", "--file", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "not UTF-8" in lines[0], lines[0]
