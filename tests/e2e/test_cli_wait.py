"""`fleetrun send --wait` as a process on a terminal (a pseudo-terminal), with a real
agent online and a registered node whose agent is not running: the online node's result
comes back, the offline one is named in the progress display while it waits and then
reported unreachable, and the wait ends long before the delivery deadline. (The
decisions without an agent are in tests/api/test_cli_wait.py.)"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from fleetrun.cli.exits import Exit


@pytest.fixture(scope="module")
def half_fleet(tmp_path_factory):
    """A server with one agent running (web01) and one registered but never started."""
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("half")).start()
    try:
        f.add_agents(1, tags={"role": "web"}, prefix="web")
        f.add_agents(1, tags={"role": "web"}, prefix="gone", start=False)
        yield f
    finally:
        f.close()


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """`fleetrun ARGS` with its stderr on a pseudo-terminal (so rich draws its live
    progress there) and its stdout on a pipe; everything read as it comes."""

    def __init__(self, fleet, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
        env.update(
            FLEETRUN_SERVER=fleet.server.url,
            FLEETRUN_TOKEN=fleet.server.token,
            FLEETRUN_CONFIG=os.devnull,
            TERM="xterm-256color",
            COLUMNS="160",
        )
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetrun", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            start_new_session=True,
            # Ctrl-C reaches a command run from a shell's prompt with SIGINT at its default;
            # a test run in the background of a script (as CI runs the suite) inherits it
            # ignored, and an ignored SIGINT is what the process would keep.
            preexec_fn=_sigint_default,
        )
        os.close(slave)
        self._master = master
        self._screen: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            self._screen.append(data)

    @property
    def screen(self) -> str:
        """What reached the terminal, without colours and cursor moves."""
        text = b"".join(self._screen).decode("utf-8", "replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.screen:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.screen}"
            assert time.monotonic() < deadline, f"{text!r} never shown: {self.screen[-2000:]}"
            time.sleep(0.05)

    def finish(self, timeout_s: float = 120) -> tuple[int, str]:
        stdout, _ = self.proc.communicate(timeout=timeout_s)
        self._reader.join(5)
        os.close(self._master)
        return self.proc.returncode, stdout.decode()


def test_the_offline_node_is_named_while_waiting_then_reported_unreachable(half_fleet):
    online, offline = half_fleet.agents
    started = time.monotonic()
    term = Terminal(
        half_fleet,
        "send",
        "--tag",
        "role=web",
        "--script",
        "echo up on $FLEETRUN_NODE_ID",
        "--wait",
        "--unreachable-after",
        "4s",
    )
    term.wait_for(f"Delayed (offline): {offline.name}")
    code, stdout = term.finish()
    assert time.monotonic() - started < 60  # the delivery deadline is an hour
    assert code == Exit.NODES_UNREACHABLE, (stdout, term.screen)
    assert f"up on {online.node_id}" in stdout
    assert "Unreachable on 1 of 2 node(s): Success 1 · Delayed 1" in stdout
    assert f"Unreachable (offline, Delayed over 4s): {offline.name} ({offline.node_id})" in stdout
    assert re.search(rf"{offline.name} \d+s \(unreachable\)", term.screen), term.screen
    assert "keeps running" in term.screen and "Traceback" not in term.screen
    command = half_fleet.client.list_commands(limit=1)[0]
    assert command.status == "InProgress" and command.counts.get("Delayed") == 1


def test_make_up_sends_its_demo_to_the_local_node_only_and_ends_with_one_offline(tmp_path):
    """A second node enrolled earlier whose agent is gone: `make up` again still ends,
    at once and successfully, because its demo goes to this machine's node alone."""
    from fleetrun.sdk import Client
    from tests.harness import free_port

    state = tmp_path / "devstack"
    env = {**os.environ, "FLEETRUN_PORT": str(free_port()), "FLEETRUN_DEVSTACK_DIR": str(state)}
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "devstack.py")

    def up() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, "up"], env=env, capture_output=True, text=True, timeout=170
        )

    try:
        first = up()
        assert first.returncode == 0, first.stdout + first.stderr
        url = f"http://127.0.0.1:{env['FLEETRUN_PORT']}"
        token = (state / "server" / "admin.token").read_text().strip()
        with Client(url, token) as client:
            activation = client.create_activation(name="gone")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetrun.agent",
                "register",
                "--state-dir",
                str(tmp_path / "gone"),
                "--server",
                url,
                "--activation-id",
                activation.id,
                "--activation-code",
                activation.code,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        again = up()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Success on 1 node(s)" in again.stdout
    finally:
        subprocess.run([sys.executable, script, "down"], env=env, capture_output=True, timeout=60)
        for name in ("agent", "server"):  # never leave a process behind
            pid_file = state / f"{name}.pid"
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_ctrl_c_stops_the_wait_not_the_command_and_says_how_to_come_back(half_fleet):
    offline = half_fleet.agents[1]
    term = Terminal(
        half_fleet,
        *("send", "--node", offline.node_id, "--script", "true", "--wait"),
        *("--unreachable-after", "10m"),  # the subject is Ctrl-C: no other end may come first
    )
    term.wait_for(f"Delayed (offline): {offline.name}")
    term.proc.send_signal(signal.SIGINT)  # what Ctrl-C on the terminal sends
    code, _ = term.finish()
    assert code == Exit.INTERRUPTED
    command_id = re.search(r"Command (\S+) sent to 1 node\(s\)", term.screen).group(1)
    assert f"command {command_id} keeps running" in term.screen
    assert f"fleetrun commands wait {command_id}" in term.screen
    assert f"fleetrun commands cancel {command_id}" in term.screen
    assert "Traceback" not in term.screen and "Aborted" not in term.screen
    assert half_fleet.client.get_command(command_id).status == "InProgress"
