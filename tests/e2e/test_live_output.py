"""Output followed live from real agents: a script printing a numbered line every
100 ms is followed by `fleetrun send --wait --follow` and by `fleetrun invocations tail
--follow` started while it runs (re-attach). Each line is seen once, in order, and
before the command ends: the script waits for the test to release it after its last
numbered line, and the test releases it only once it has read that line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import wait_for

LINES = 10


@pytest.fixture(scope="module")
def live_fleet(tmp_path_factory):
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("live")).start()
    try:
        f.add_agents(2, tags={"role": "live"}, prefix="live")
        yield f
    finally:
        f.close()


def script(release: Path) -> str:
    return (
        f"for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; "
        f"while [ ! -e {release} ]; do sleep 0.05; done; echo finished"
    )


class Reader:
    """`fleetrun ARGS` as a process, its stdout read line by line as it comes."""

    def __init__(self, fleet, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
        env.update(
            FLEETRUN_SERVER=fleet.server.url,
            FLEETRUN_TOKEN=fleet.server.token,
            FLEETRUN_CONFIG=os.devnull,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetrun", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def wait_for(self, wanted: set[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(self.lines):
            assert self.proc.poll() is None, (self.proc.returncode, self.lines, self.stderr())
            assert time.monotonic() < deadline, f"never printed {wanted - set(self.lines)}"
            time.sleep(0.02)

    def stderr(self) -> str:
        return self.proc.stderr.read().decode() if self.proc.stderr else ""

    def finish(self, timeout_s: float = 60) -> tuple[int, str]:
        """The exit code and stderr, once the process has ended (its pipes closed)."""
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        errors = self.stderr()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code, errors


def numbered(name: str) -> list[str]:
    return [f"{name} | line {i}" for i in range(1, LINES + 1)]


def test_send_wait_follow_prints_each_line_once_in_order_before_the_command_ends(
    live_fleet, tmp_path
):
    release = tmp_path / "release"
    names = [a.name for a in live_fleet.agents]
    sent = Reader(
        live_fleet, "send", "--tag", "role=live", "--script", script(release), "--wait", "--follow"
    )
    last = {f"{name} | line {LINES}" for name in names}
    sent.wait_for(last)  # every numbered line is out, and the script still waits
    assert sent.proc.poll() is None
    release.touch()
    code, errors = sent.finish()
    assert code == 0, errors
    for name in names:
        mine = [line for line in sent.lines if line.startswith(f"{name} |")]
        assert mine == [*numbered(name), f"{name} | finished"]


def test_tail_follow_re_attaches_to_a_running_command_and_misses_nothing(live_fleet, tmp_path):
    release = tmp_path / "release"
    agent = live_fleet.agents[0]
    client = live_fleet.client
    command = client.send_command(script=script(release), node_ids=[agent.node_id])
    wait_for(
        lambda: b"line 3\n" in client.get_output(command.id, agent.node_id),
        timeout_s=60,
        what="the script to print line 3",
    )
    tail = Reader(live_fleet, "invocations", "tail", command.id, "--follow")
    tail.wait_for({f"{agent.name} | line {LINES}"})
    assert tail.proc.poll() is None  # still following: the command has not ended
    release.touch()
    code, errors = tail.finish()
    assert code == 0, errors
    assert tail.lines == [*numbered(agent.name), f"{agent.name} | finished"]
    assert client.wait(command.id, timeout_s=30).status == "Success"
