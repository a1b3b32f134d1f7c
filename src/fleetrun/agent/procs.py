"""Finding an invocation's processes, wherever they went.

Every step runs with FLEETRUN_INVOCATION_ID in its environment, which children
inherit. The process group catches a step's tree; this catches the rest: a child
that left the group with `setsid`, or a step the agent started just before it was
killed, before it could record the group in its journal.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")


def processes_of(invocation_id: str) -> list[int]:
    """Pids of live processes whose environment names this invocation (Linux /proc)."""
    marker = f"FLEETRUN_INVOCATION_ID={invocation_id}".encode()
    me = os.getpid()
    found = []
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_invocation(invocation_id: str) -> int:
    """SIGKILL every process of an invocation (and their groups); how many were found."""
    pids = processes_of(invocation_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
