"""What the running agent writes for `fleetrun-agent status`: only when its connection
changes (a session opens or ends, an attempt fails differently), and since when it has
been trying stays put across failed attempts. The clock is injected."""

from __future__ import annotations

import json

from fleetrun.agent.status import StatusFile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _read(path):
    return json.loads(path.read_text())


def test_the_file_follows_connect_and_disconnect_and_skips_a_repeated_error(tmp_path):
    path, clock = tmp_path / "status.json", Clock()
    status = StatusFile(path, "https://fleet.example:8470", clock=clock)
    status.trying()
    assert _read(path) | {"pid": 0} == {
        "pid": 0,
        "server": "https://fleet.example:8470",
        "connected": False,
        "since": 1000.0,
        "session_id": None,
        "last_error": None,
    }
    clock.now = 1005.0
    status.disconnected("Cannot connect to https://fleet.example:8470: refused.")
    assert _read(path)["since"] == 1000.0  # trying since the start
    written = path.stat().st_ino
    clock.now = 1010.0
    status.disconnected("Cannot connect to https://fleet.example:8470: refused.")
    assert path.stat().st_ino == written  # the same error again: nothing written

    clock.now = 1020.0
    status.connected("s-1")
    up = _read(path)
    assert (up["connected"], up["since"], up["session_id"], up["last_error"]) == (
        True,
        1020.0,
        "s-1",
        None,
    )

    clock.now = 1030.0
    status.disconnected("https://fleet.example:8470 closed the session (close code 1012).")
    down = _read(path)
    assert (down["connected"], down["since"], down["session_id"]) == (False, 1030.0, "s-1")
    clock.now = 1040.0
    status.disconnected("Cannot connect to https://fleet.example:8470: refused.")
    later = _read(path)
    assert later["since"] == 1030.0 and later["last_error"].startswith("Cannot connect")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_an_unwritable_status_file_does_not_stop_the_agent(tmp_path):
    status = StatusFile(tmp_path / "missing" / "status.json", "https://x")
    status.connected("s-1")  # logged, not raised
    assert status.record is not None and status.record.connected
