"""Deleting on a terminal asks first (`--yes` skips the question); a script, whose stdin
is not a terminal, is never asked. The CLI runs as a process on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

from fleetrun.core.errors import NotFoundError
from tests.harness import Fleet


@pytest.fixture(scope="module")
def confirm_fleet(tmp_path_factory):
    """One server for the module: each test deletes only a node or a document it made."""
    f = Fleet(tmp_path_factory.mktemp("confirm")).start()
    try:
        yield f
    finally:
        f.close()


def on_terminal(fleet, *args: str, answer: str | None = None) -> tuple[int, str]:
    """Run `fleetrun ARGS` with stdin and stderr on a pseudo-terminal, type `answer`
    once the question shows, and return the exit code and what the terminal showed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    env.update(
        FLEETRUN_SERVER=fleet.server.url,
        FLEETRUN_TOKEN=fleet.server.token,
        FLEETRUN_CONFIG=os.devnull,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetrun", *args],
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        screen += chunk
        if answer is not None and b"[y/N]" in screen:
            os.write(master, answer.encode() + b"\n")
            answer = None
    proc.wait(30)
    try:
        while chunk := os.read(master, 4096):
            screen += chunk
    except OSError:
        pass
    os.close(master)
    return proc.returncode, screen.decode("utf-8", "replace")


@pytest.fixture
def offline_node(confirm_fleet):
    return confirm_fleet.add_agents(1, start=False)[0]


def test_deleting_a_node_on_a_terminal_asks_and_a_no_deletes_nothing(confirm_fleet, offline_node):
    code, screen = on_terminal(confirm_fleet, "nodes", "delete", offline_node.node_id, answer="n")
    assert code == 1, screen
    assert f"Deregister node {offline_node.node_id}?" in screen and "Nothing was deleted" in screen
    assert confirm_fleet.client.get_node(offline_node.node_id).id == offline_node.node_id
    code, screen = on_terminal(confirm_fleet, "nodes", "delete", offline_node.node_id, answer="y")
    assert code == 0, screen
    with pytest.raises(NotFoundError):
        confirm_fleet.client.get_node(offline_node.node_id)


def test_yes_skips_the_question(confirm_fleet):
    confirm_fleet.client.create_document(
        "cli-doomed", "mainSteps: [{name: a, action: runShellScript, inputs: {runCommand: 'true'}}]"
    )
    code, screen = on_terminal(confirm_fleet, "documents", "delete", "cli-doomed", "--yes")
    assert code == 0 and "[y/N]" not in screen, screen
    with pytest.raises(NotFoundError):
        confirm_fleet.client.get_document("cli-doomed")
