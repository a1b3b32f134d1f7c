"""`fleetrun-agent status` says whether the agent runs, whether it is connected, to which
server and since when, and why not, with an exit code per answer: a real agent and a
real server, stopped and killed for real (the state lock and pids are the point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

from tests.harness import wait_for

CONNECTED, NOT_RUNNING, DISCONNECTED = 0, 3, 4


def status(agent, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "status",
            "--state-dir",
            str(agent.state_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_json(agent, code):
    """The status, once its exit code is `code`."""

    def probe():
        done = status(agent, "--json")
        return json.loads(done.stdout) if done.returncode == code else None

    return wait_for(probe, timeout_s=60, what=f"fleetrun-agent status to exit {code}")


def _when(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_status_follows_the_agent_connected_disconnected_and_stopped(fleet):
    agent = fleet.add_agent()
    up = status_json(agent, CONNECTED)
    assert up["state"] == "connected" and up["running"] is True and up["connected"] is True
    assert up["pid"] == agent.proc.pid and up["server"] == fleet.server.url
    assert up["node_id"] == agent.node_id and up["session_id"]
    assert up["last_error"] is None and up["disconnected_since"] is None
    assert abs((datetime.now(UTC) - _when(up["connected_since"])).total_seconds()) < 120
    text = status(agent)
    assert text.returncode == CONNECTED and "state: connected" in text.stdout
    assert f"server: {fleet.server.url}" in text.stdout

    fleet.server.stop()
    down = status_json(agent, DISCONNECTED)
    assert down["state"] == "disconnected" and down["running"] is True
    assert down["connected"] is False and down["pid"] == agent.proc.pid
    assert fleet.server.url in down["last_error"] and down["last_error"].endswith(".")
    assert _when(down["disconnected_since"]) >= _when(up["connected_since"])
    # the reconnection attempts fail too: the last error is theirs, the time it has been
    # trying since stays the time the session ended
    trying = wait_for(
        lambda: (
            (s := status_json(agent, DISCONNECTED))["last_error"].startswith("Cannot connect to")
            and s
        ),
        what="a failed reconnection attempt in the status",
    )
    assert trying["disconnected_since"] == down["disconnected_since"]
    assert len(trying["last_error"].splitlines()) == 1
    text = status(agent)
    assert text.returncode == DISCONNECTED and "last_error: Cannot connect to" in text.stdout

    agent.stop()
    gone = status_json(agent, NOT_RUNNING)
    assert gone["state"] == "not running" and gone["running"] is False
    assert gone["pid"] is None and gone["connected"] is False and gone["last_error"] is None
    assert status(agent).stdout.count("state: not running") == 1


def test_a_killed_agent_is_not_running_whatever_its_file_says(fleet):
    """kill -9 leaves status.json saying "connected"; the lock says the truth. A new
    agent's status is its own, not the dead one's."""
    agent = fleet.add_agent()
    before = status_json(agent, CONNECTED)
    agent.kill()
    recorded = json.loads((agent.state_dir / "status.json").read_text())
    assert recorded["connected"] is True and recorded["pid"] == before["pid"]
    gone = status_json(agent, NOT_RUNNING)
    assert gone["state"] == "not running" and gone["session_id"] is None
    with_file = status(agent)
    assert with_file.returncode == NOT_RUNNING and "Traceback" not in with_file.stderr

    agent.start()
    again = status_json(agent, CONNECTED)
    assert again["pid"] == agent.proc.pid != before["pid"]
    assert again["session_id"] != before["session_id"]
    assert os.path.exists(agent.state_dir / "status.json")
