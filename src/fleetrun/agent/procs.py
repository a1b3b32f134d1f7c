"""Finding and stopping an invocation's processes, wherever they went.

Two methods, chosen when the agent starts (`fleetrun-agent status` shows which):

- **cgroup** (cgroups.py): every invocation in a cgroup v2 of its own. Nothing a
  script starts can leave it, so a cancel, a timeout or a restart of the agent
  kills all of it, `setsid` and a cleared environment included.
- **process-group**, where cgroup v2 is not available to the agent: each step runs
  in its own process group, with FLEETRUN_INVOCATION_ID in its environment, which
  children inherit. The group catches a step's tree; the environment marker
  catches a child that left the group with `setsid`, or a step the agent started
  just before it was killed. A child that does both escapes: only cgroups hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from fleetrun.agent.cgroups import EMPTY_WAIT_S, CgroupTree, CgroupUnavailableError, locate
from fleetrun.agent.journal import group_alive, process_start_time

log = logging.getLogger(__name__)

PROC = Path("/proc")
CGROUP = "cgroup"
PROCESS_GROUP = "process-group"
MODES = ("auto", CGROUP, PROCESS_GROUP)
SETTLE_POLL_S = 0.02


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


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_leftover_group(pgid: int | None, started: str | None) -> None:
    """SIGKILL a group a previous run of the agent started, if it is still that group:
    the leader's start time guards against pid reuse."""
    if (
        pgid
        and group_alive(pgid)
        and (started is None or process_start_time(pgid) in (started, None))
    ):
        kill_group(pgid, signal.SIGKILL)


class ProcessGroups:
    """Process groups plus the environment marker: where cgroups are not available."""

    method = PROCESS_GROUP

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    @property
    def detail(self) -> str:
        return self.reason

    def start(self) -> None:
        """Nothing to set up."""

    def close(self) -> None:
        """Nothing to take down."""

    def entry(self, invocation_id: str) -> bytes | None:
        """The cgroup.procs file a step's child enters (none here)."""
        return None

    def terminate(self, invocation_id: str, pgid: int) -> None:
        kill_group(pgid, signal.SIGTERM)

    def kill(self, invocation_id: str, pgid: int | None, started: str | None = None) -> None:
        kill_leftover_group(pgid, started)
        kill_invocation(invocation_id)  # children that left the group

    async def settle(self, invocation_id: str) -> None:
        """Nothing to wait for: the kill was synchronous."""

    def tidy(self, keep: set[str]) -> None:
        """Nothing to remove."""


class Cgroups:
    """One cgroup v2 per invocation (see cgroups.py)."""

    method = CGROUP

    def __init__(self, tree: CgroupTree) -> None:
        self.tree = tree

    @property
    def detail(self) -> str:
        return str(self.tree.root)

    def start(self) -> None:
        self.tree.enter()

    def close(self) -> None:
        self.tree.leave()

    def entry(self, invocation_id: str) -> bytes | None:
        return os.fsencode(self.tree.create(invocation_id))

    def terminate(self, invocation_id: str, pgid: int) -> None:
        kill_group(pgid, signal.SIGTERM)
        self.tree.signal(invocation_id, signal.SIGTERM)  # those that left the group too

    def kill(self, invocation_id: str, pgid: int | None, started: str | None = None) -> None:
        self.tree.kill(invocation_id)
        kill_leftover_group(pgid, started)  # a group started outside (an older agent)

    async def settle(self, invocation_id: str) -> None:
        """Wait (boundedly) until the killed cgroup is empty, then remove it."""
        for _ in range(int(EMPTY_WAIT_S / SETTLE_POLL_S)):
            if not self.tree.populated(invocation_id):
                break
            await asyncio.sleep(SETTLE_POLL_S)
        self.tree.remove(invocation_id)

    def tidy(self, keep: set[str]) -> None:
        """Remove the cgroups of ended invocations (but those in `keep`) that are
        empty: when one ends, and later when a background process it left exits."""
        self.tree.sweep(keep)


Containment = Cgroups | ProcessGroups


def choose(mode: str, node_id: str) -> Containment:
    """The method for this agent: cgroups where it can manage them ("auto"), or as
    asked. CgroupUnavailableError if "cgroup" is asked and not available."""
    if mode == PROCESS_GROUP:
        return ProcessGroups("chosen with --containment process-group")
    try:
        containment: Containment = Cgroups(CgroupTree(locate(node_id)))
        containment.start()
    except CgroupUnavailableError as exc:
        if mode == CGROUP:
            raise
        return ProcessGroups(str(exc))
    except OSError as exc:
        reason = f"the agent cannot make its cgroup ({exc.strerror or exc})"
        if mode == CGROUP:
            raise CgroupUnavailableError(reason) from exc
        return ProcessGroups(reason)
    return containment


def in_use(pid: int, node_id: str) -> bool:
    """Whether the agent with this pid lives in its cgroup leaf (uses cgroups)."""
    try:
        text = (PROC / str(pid) / "cgroup").read_text()
    except OSError:
        return False
    return any(
        line.startswith("0::") and line.rstrip().endswith(f"/fleetrun-{node_id}/agent")
        for line in text.splitlines()
    )
