"""Whether the agent runs and is connected: what `fleetrun-agent status` reports.

The running agent keeps status.json in its state directory: its pid, the server it
talks to, whether a session is open and since when, and, while it is not, since when
it has been trying and the last error in one sentence. The file is replaced atomically
when a session opens or ends, and when a failed attempt's error differs from the last
one: never on a heartbeat.

The file alone proves nothing about the present: an agent killed with SIGKILL leaves
it behind. `read` believes it only while the agent that wrote it still holds the state
lock (the kernel drops a dead process's lock), so a stale file says "not running".

    not running   nothing holds the lock                  exit NOT_RUNNING (3)
    disconnected  the lock is held, no session is open    exit DISCONNECTED (4)
    connected     the lock is held, a session is open     exit 0
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetrun.agent.lock import StateLock
from fleetrun.agent.state import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "status.json"
LOCK_NAME = "agent.lock"

CONNECTED = 0  # a session with the server is open
NOT_RUNNING = 3  # no agent runs with this state directory (as `systemctl is-active`)
DISCONNECTED = 4  # the agent runs but has no session: it keeps trying


@dataclass(frozen=True)
class Record:
    """What status.json holds (times are Unix seconds)."""

    pid: int
    server: str
    connected: bool
    since: float  # connected since, or trying to connect since
    session_id: str | None = None  # the open session (or the last one, while trying)
    last_error: str | None = None  # why the last session or attempt ended


class StatusFile:
    """Written by the running agent: one small file, replaced whole."""

    def __init__(self, path: Path, server: str, *, clock: Any = time.time) -> None:
        self.path = path
        self.server = server
        self.clock = clock
        self.record: Record | None = None

    def trying(self) -> None:
        """The agent started and has no session yet."""
        self._write(Record(os.getpid(), self.server, False, self.clock()))

    def connected(self, session_id: str) -> None:
        self._write(Record(os.getpid(), self.server, True, self.clock(), session_id))

    def disconnected(self, error: str) -> None:
        """A session ended, or an attempt failed: since when it has been trying stays
        the time the last session ended; only a new error is written."""
        last = self.record
        if last is not None and not last.connected:
            if last.last_error == error:
                return
            since, session_id = last.since, last.session_id
        else:
            since, session_id = self.clock(), last.session_id if last else None
        self._write(Record(os.getpid(), self.server, False, since, session_id, error))

    def _write(self, record: Record) -> None:
        self.record = record
        try:
            write_atomic(self.path, json.dumps(asdict(record)).encode(), 0o600)
        except OSError as exc:  # the agent runs on; only `status` is the poorer for it
            log.warning("cannot write %s: %s", self.path, exc)


@dataclass(frozen=True)
class Status:
    """The agent's state as `fleetrun-agent status` shows it."""

    running: bool
    pid: int | None = None
    record: Record | None = None  # None while running: it has not written one yet

    @property
    def exit_code(self) -> int:
        if not self.running:
            return NOT_RUNNING
        return CONNECTED if self.record is not None and self.record.connected else DISCONNECTED

    def report(self) -> dict[str, Any]:
        record = self.record
        connected = bool(record and record.connected)
        return {
            "state": "not running"
            if not self.running
            else ("connected" if connected else "disconnected"),
            "pid": self.pid,
            "connected": connected,
            "connected_since": _iso(record.since) if record and connected else None,
            "disconnected_since": _iso(record.since) if record and not connected else None,
            "session_id": record.session_id if record else None,
            "last_error": record.last_error if record and not connected else None,
        }


def read(root: Path) -> Status:
    """The agent's state: running (it holds the lock), and what its file says if the
    file is that agent's own (same pid)."""
    lock = StateLock(root / LOCK_NAME)
    if not lock.held_elsewhere():
        return Status(running=False)
    pid = lock.holder()
    record = _load(root / FILE_NAME)
    if record is None or record.pid != pid:  # a previous agent's file: this one is starting
        record = None
    return Status(running=True, pid=pid, record=record)


def _load(path: Path) -> Record | None:
    try:
        data = json.loads(path.read_text())
        return Record(**data)
    except (OSError, ValueError, TypeError):
        return None


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
