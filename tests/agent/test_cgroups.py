"""cgroup v2 bookkeeping: where the hierarchy is, which cgroup is the agent's, and
killing a cgroup's processes on kernels without cgroup.kill."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from fleetrun.agent.cgroups import (
    CgroupTree,
    CgroupUnavailableError,
    base_of,
    enter_cgroup,
    favours_migrations,
    locate,
    mount_point,
    own_cgroup,
)
from tests.harness import wait_for

HYBRID = (
    "35 24 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu\n"
    "36 24 0:31 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw\n"
)
UNIFIED = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_ONLY = "35 24 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu\n"


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [(HYBRID, "/sys/fs/cgroup/unified"), (UNIFIED, "/sys/fs/cgroup"), (V1_ONLY, None)],
)
def test_mount_point_finds_the_cgroup2_hierarchy(mountinfo, expected):
    found = mount_point(mountinfo)
    assert (str(found) if found else None) == expected


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (HYBRID, False),
        (UNIFIED, False),
        (UNIFIED.replace("rw,nsdelegate", "rw,nsdelegate,favordynmods"), True),
        (HYBRID.replace("cgroup2 cgroup2 rw", "cgroup2 cgroup2 rw,favordynmods"), True),
        (V1_ONLY, None),
    ],
)
def test_whether_the_cgroup2_mount_favours_migrations(mountinfo, expected):
    assert favours_migrations(mountinfo) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/system.slice/fleetrun-agent.service\n", "/system.slice/fleetrun-agent.service"),
        ("4:memory:/x\n1:cpu:/\n0::/\n", "/"),
        ("4:memory:/x\n", None),
    ],
)
def test_own_cgroup_reads_the_v2_line(text, expected):
    assert own_cgroup(text) == expected


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("/", "/"),
        ("/system.slice/fleetrun-agent.service", "/system.slice/fleetrun-agent.service"),
        # started from its own leaf, or from a script it ran: the same tree, not a nested one
        ("/system.slice/a.service/fleetrun-n-1/agent", "/system.slice/a.service"),
        ("/fleetrun-n-1/inv-i-9", "/"),
        ("/fleetrun-n-2/agent", "/fleetrun-n-2/agent"),  # another agent's tree
    ],
)
def test_the_tree_lives_under_where_the_agent_was_started(current, expected):
    assert base_of(current, "n-1") == expected


def _tree() -> CgroupTree:
    try:
        root = locate(f"n-test-{uuid.uuid4().hex[:8]}")
    except CgroupUnavailableError as exc:
        pytest.skip(f"cgroup v2 is not available here: {exc}")
    return CgroupTree(root, use_kill_file=False)


def test_without_cgroup_kill_a_frozen_cgroup_is_emptied_with_sigkill():
    """The path for kernels before 5.14: freeze, SIGKILL every pid, thaw."""
    tree = _tree()
    tree.root.mkdir()
    try:
        procs_file = os.fsencode(tree.create("i-1"))
        child = subprocess.Popen(
            ["sh", "-c", "setsid sleep 300 & sleep 300"],
            preexec_fn=lambda: enter_cgroup(procs_file),
        )
        wait_for(lambda: len(tree.pids("i-1")) == 3, timeout_s=5, what="three processes")
        tree.kill("i-1")
        child.wait(timeout=5)
        wait_for(lambda: not tree.populated("i-1"), timeout_s=5, what="an empty cgroup")
        assert tree.remove("i-1")
        assert tree.invocations() == []
    finally:
        for sub in tree.root.glob("inv-*"):
            sub.rmdir()
        tree.root.rmdir()
