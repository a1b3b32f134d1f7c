"""What the agent's tests share: its command line, run through its real entry point."""

from __future__ import annotations

import pytest

from fleetrun.agent.cli import main


@pytest.fixture
def agent(capsys):
    """Run `fleetrun-agent ARGS`: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out, err = capsys.readouterr()
        return exited.value.code, out, err

    return run


@pytest.fixture
def state(tmp_path):
    root = tmp_path / "agent"
    root.mkdir(mode=0o700)
    return root
