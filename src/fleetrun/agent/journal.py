"""The journal and the spool: why a script never runs twice and no output is lost.

Journal: an invocation is written here (fsynced) before it is acknowledged and before
it starts. A repeated `invoke` of a journalled id is acknowledged again and never
run again. After a restart, an entry whose process was running is closed out as
Failed (AgentRestarted), never restarted.

Spool: every output chunk and state change of an invocation is appended to its spool
file with the next sequence number before it is sent. The server acknowledges
cumulatively; whatever it has not acknowledged is sent again after a reconnect (or
a restart), and the server stores each number once. When the final state is
acknowledged the spool file is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from fleetrun.agent.state import write_atomic
from fleetrun.core import protocol

log = logging.getLogger(__name__)

MAX_CHUNK = 64 * 1024  # bytes of output per frame
KEEP_REPORTED_S = 7 * 86400

Stream = Literal["stdout", "stderr"]  # how long ids of finished invocations are remembered


@dataclass
class Entry:
    invocation_id: str
    command_id: str
    accepted_at: float
    state: str = "accepted"  # accepted -> running -> finished -> reported
    pgid: int | None = None
    pgid_started: str | None = None  # start time of the group leader, against pid reuse
    principal: str | None = None
    document_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Journal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, Entry] = {}
        for path in sorted(root.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                entry = Entry(**data)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable journal record %s: %s", path.name, exc)
                continue
            self.entries[entry.invocation_id] = entry

    def get(self, invocation_id: str) -> Entry | None:
        return self.entries.get(invocation_id)

    def accept(self, invoke: protocol.Invoke) -> Entry:
        entry = Entry(
            invocation_id=invoke.invocation_id,
            command_id=invoke.command_id,
            accepted_at=time.time(),
            principal=invoke.principal,
            document_name=invoke.document_name,
        )
        self.save(entry)
        return entry

    def save(self, entry: Entry) -> None:
        self.entries[entry.invocation_id] = entry
        write_atomic(self._path(entry.invocation_id), json.dumps(asdict(entry)).encode())

    def unreported(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.state != "reported"]

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for entry in list(self.entries.values()):
            if entry.state == "reported" and now - entry.accepted_at > KEEP_REPORTED_S:
                del self.entries[entry.invocation_id]
                self._path(entry.invocation_id).unlink(missing_ok=True)

    def _path(self, invocation_id: str) -> Path:
        if "/" in invocation_id or invocation_id.startswith("."):
            raise ValueError(f"bad invocation id {invocation_id!r}")
        return self.root / f"{invocation_id}.json"


class Outbox:
    """The numbered frames of one invocation, spooled to disk until acknowledged."""

    def __init__(self, path: Path, invocation_id: str) -> None:
        self.path = path
        self.invocation_id = invocation_id
        self.next_seq = 1
        self.acked_seq = 0
        self.sent_seq = 0
        self.final_seq: int | None = None  # seq of the invocation's terminal state
        self._offsets: deque[tuple[int, int]] = deque()  # (seq, offset) of unacked frames
        self._end = 0
        if path.exists():
            self._load()
        self._writer: IO[bytes] = path.open("ab")
        self._reader: IO[bytes] | None = None

    def _load(self) -> None:
        with self.path.open("rb") as fh:
            offset = 0
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn last write: drop it, it was never sent
                data = json.loads(line)
                seq = int(data["seq"])
                self._offsets.append((seq, offset))
                self.next_seq = seq + 1
                if (
                    data.get("type") == "state"
                    and data.get("step") is None
                    and data.get("status") not in ("InProgress", "Pending")
                ):
                    self.final_seq = seq
                offset += len(line)
            self._end = offset
        with self.path.open("r+b") as fh:
            fh.truncate(self._end)

    @property
    def done(self) -> bool:
        """The final state is written and the server has stored everything."""
        return self.final_seq is not None and self.acked_seq >= self.final_seq

    @property
    def unsent(self) -> int:
        return self.next_seq - 1 - self.sent_seq

    @property
    def in_flight(self) -> int:
        return self.sent_seq - self.acked_seq

    def output(self, step: int, stream: Stream, data: bytes) -> None:
        for start in range(0, len(data), MAX_CHUNK):
            self._append(
                protocol.Output(
                    invocation_id=self.invocation_id,
                    seq=self.next_seq,
                    step=step,
                    stream=stream,
                    data=protocol.encode(data[start : start + MAX_CHUNK]),
                )
            )

    def state(self, **fields: Any) -> None:
        frame = protocol.State(invocation_id=self.invocation_id, seq=self.next_seq, **fields)
        self._append(frame)
        if frame.step is None and frame.status not in ("InProgress", "Pending"):
            self.final_seq = frame.seq

    def _append(self, frame: protocol.Output | protocol.State) -> None:
        line = (protocol.dump(frame) + "\n").encode()
        self._writer.write(line)
        self._writer.flush()
        self._offsets.append((frame.seq, self._end))
        self._end += len(line)
        self.next_seq += 1

    def rewind(self) -> None:
        """A new session: everything not acknowledged goes out again."""
        self.sent_seq = self.acked_seq
        self._close_reader()

    def take(self, limit: int) -> Iterator[str]:
        """Up to `limit` frames after the last one sent, in order."""
        if limit <= 0 or self.unsent <= 0:
            return
        if self._reader is None:
            self._reader = self.path.open("rb")
            offset = next((off for seq, off in self._offsets if seq > self.sent_seq), self._end)
            self._reader.seek(offset)
        for _ in range(min(limit, self.unsent)):
            line = self._reader.readline()
            if not line.endswith(b"\n"):
                break
            self.sent_seq += 1
            yield line.decode().rstrip("\n")

    def ack(self, seq: int) -> None:
        if seq <= self.acked_seq:
            return
        self.acked_seq = min(seq, self.next_seq - 1)
        self.sent_seq = max(self.sent_seq, self.acked_seq)
        while self._offsets and self._offsets[0][0] <= self.acked_seq:
            self._offsets.popleft()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, delete: bool = False) -> None:
        self._close_reader()
        self._writer.close()
        if delete:
            self.path.unlink(missing_ok=True)


def spool_path(spool_dir: Path, invocation_id: str) -> Path:
    return spool_dir / f"{invocation_id}.spool"


def process_start_time(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
