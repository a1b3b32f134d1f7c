"""Each invocation in a cgroup of its own (cgroup v2): stopping it stops all it started.

A process group holds a step's tree only until a child calls `setsid`; the
environment marker (procs.py) holds it only until a child clears its environment. A
cgroup holds every descendant whatever it does, because only a privileged writer of
`cgroup.procs` can move a process out. Layout, under the cgroup the agent was
started in (its *base*; under systemd, the service's own cgroup):

    <base>/fleetrun-<node id>/
        agent/              the agent itself (cgroup v2 lets a cgroup that has
                            children hold no processes of its own once it
                            distributes resources: the agent lives in a leaf)
        inv-<invocation>/   every process of one invocation, all of its steps

A step's child writes its own pid into its invocation's `cgroup.procs` before it
drops privileges and executes the script, so nothing of the script ever runs
outside. Stopping an invocation writes `cgroup.kill` (Linux 5.14+) or, on older
kernels, freezes the cgroup, SIGKILLs every pid in `cgroup.procs` and thaws it.
Empty cgroups are removed; a restarted agent finds the cgroups of invocations a
previous run left behind under the same name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

PROC_SELF = Path("/proc/self")
PREFIX = "inv-"
EMPTY_WAIT_S = 5.0  # how long a kill may take to empty a cgroup


class CgroupUnavailableError(Exception):
    """No cgroup v2 hierarchy this agent can manage; the message says why."""


def mount_point(mountinfo: str) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo text."""
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split(" ", 1)[0] == "cgroup2":
            return Path(fields.split(" ")[4].replace("\\040", " "))
    return None


def favours_migrations(mountinfo: str) -> bool | None:
    """Whether the cgroup v2 hierarchy is mounted with `favordynmods` (None: no cgroup
    v2 mounted). Without it, moving a process into a cgroup waits for the kernel to
    synchronise every CPU: about 10 ms per step started, measured on a 2-core VM; with
    it, a tenth of a millisecond (docs/security.md)."""
    for line in mountinfo.splitlines():
        _, _, tail = line.partition(" - ")
        fields = tail.split(" ")
        if fields[0] == "cgroup2":
            return len(fields) > 2 and "favordynmods" in fields[2].split(",")
    return None


def migrations_favoured() -> bool | None:
    """`favours_migrations` of this machine (None where /proc cannot say)."""
    try:
        return favours_migrations((PROC_SELF / "mountinfo").read_text())
    except OSError:
        return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """This process's cgroup v2 path ("/..."), from /proc/self/cgroup text."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def base_of(current: str, node_id: str) -> str:
    """The cgroup the agent's tree lives under. An agent started from inside its own
    tree (its own leaf, or a script it ran) uses the same tree, not a nested one."""
    parts = current.strip("/").split("/") if current.strip("/") else []
    name = f"fleetrun-{node_id}"
    if name in parts:
        parts = parts[: parts.index(name)]
    return "/" + "/".join(parts)


def locate(node_id: str) -> Path:
    """The directory of this agent's cgroup tree, or CgroupUnavailableError."""
    try:
        mount = mount_point((PROC_SELF / "mountinfo").read_text())
        current = own_cgroup((PROC_SELF / "cgroup").read_text())
    except OSError as exc:
        raise CgroupUnavailableError(f"/proc cannot be read ({exc.strerror})") from exc
    if mount is None:
        raise CgroupUnavailableError("no cgroup v2 hierarchy is mounted (cgroup v1 only)")
    if current is None:
        raise CgroupUnavailableError("this process has no cgroup v2 path in /proc/self/cgroup")
    base = mount / base_of(current, node_id).lstrip("/")
    if not (base / "cgroup.procs").exists():
        raise CgroupUnavailableError(f"{base} is not visible here (another cgroup namespace?)")
    if not os.access(base, os.W_OK):
        raise CgroupUnavailableError(f"{base} is not writable by this user (run as root)")
    return base / f"fleetrun-{node_id}"


class CgroupTree:
    """One agent's cgroups: its own leaf and one per running invocation."""

    def __init__(self, root: Path, *, use_kill_file: bool = True) -> None:
        self.root = root
        self.use_kill_file = use_kill_file

    @property
    def agent_dir(self) -> Path:
        return self.root / "agent"

    def path(self, invocation_id: str) -> Path:
        return self.root / f"{PREFIX}{invocation_id}"

    def enter(self) -> None:
        """Make the tree and move the agent into its leaf (OSError if it cannot)."""
        self.agent_dir.mkdir(parents=True, exist_ok=True)
        (self.agent_dir / "cgroup.procs").write_text(str(os.getpid()))

    def leave(self) -> None:
        """Move the agent back where it started and remove the tree if it is empty."""
        with contextlib.suppress(OSError):
            (self.root.parent / "cgroup.procs").write_text(str(os.getpid()))
        for path in (self.agent_dir, self.root):
            with contextlib.suppress(OSError):
                path.rmdir()

    def create(self, invocation_id: str) -> Path:
        """The invocation's cgroup (made if needed); a child enters by writing to
        the returned cgroup.procs."""
        path = self.path(invocation_id)
        path.mkdir(exist_ok=True)
        return path / "cgroup.procs"

    def invocations(self) -> list[str]:
        """Ids of the invocations that have a cgroup here."""
        if not self.root.is_dir():
            return []
        return [p.name[len(PREFIX) :] for p in self.root.iterdir() if p.name.startswith(PREFIX)]

    def pids(self, invocation_id: str) -> list[int]:
        try:
            text = (self.path(invocation_id) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(line) for line in text.split()]

    def populated(self, invocation_id: str) -> bool:
        try:
            events = (self.path(invocation_id) / "cgroup.events").read_text()
        except OSError:
            return False  # no cgroup: nothing in it
        return "populated 1" in events.splitlines()

    def signal(self, invocation_id: str, sig: int) -> None:
        """Send a signal to every process of the invocation."""
        for pid in self.pids(invocation_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self, invocation_id: str) -> None:
        """SIGKILL every process in the invocation's cgroup, however it got there."""
        path = self.path(invocation_id)
        if not path.is_dir():
            return
        kill_file = path / "cgroup.kill"
        if self.use_kill_file and kill_file.exists():
            kill_file.write_text("1")
            return
        # Older kernels: a frozen cgroup cannot fork while its pids are killed.
        with self._frozen(path):
            for _ in range(3):  # a fork that raced the freeze is caught on the next pass
                self.signal(invocation_id, signal.SIGKILL)

    @contextlib.contextmanager
    def _frozen(self, path: Path) -> Iterator[None]:
        freeze = path / "cgroup.freeze"
        try:
            freeze.write_text("1")
        except OSError:
            yield  # no freezer: kill without it
            return
        try:
            deadline = time.monotonic() + 1.0
            while "frozen 1" not in _read(path / "cgroup.events").splitlines():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            yield
        finally:
            with contextlib.suppress(OSError):
                freeze.write_text("0")

    def remove(self, invocation_id: str) -> bool:
        """Remove the invocation's cgroup if it is empty; whether it is gone."""
        try:
            self.path(invocation_id).rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False  # still populated (a background process lives on)
        return True

    def sweep(self, keep: set[str]) -> None:
        """Remove every empty invocation cgroup but those in `keep`."""
        for invocation_id in self.invocations():
            if invocation_id not in keep:
                self.remove(invocation_id)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def enter_cgroup(procs_file: bytes) -> None:
    """In a step's child, before exec: move this process into its invocation's cgroup."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, b"0")  # "0": the writing process itself
    finally:
        os.close(fd)
