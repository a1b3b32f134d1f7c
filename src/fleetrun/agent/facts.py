"""Platform facts the agent reports: what the node is, never what it holds."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket

from fleetrun import __version__


def os_release() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        return None
    return None


def node_info() -> dict[str, object]:
    """What GetNodeInfo reports: read-only, gathered by the agent itself."""
    info: dict[str, object] = dict(collect())
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/uptime") as fh:
        info["uptime_s"] = round(float(fh.read().split()[0]))
    with contextlib.suppress(OSError):
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in fh if ln.count(":") == 1}
        info["memory_bytes"] = {"total": mem.get("MemTotal"), "available": mem.get("MemAvailable")}
    usage = shutil.disk_usage("/")
    info["disk_bytes"] = {"path": "/", "total": usage.total, "free": usage.free}
    return info


def collect() -> dict[str, str]:
    facts = {
        "hostname": socket.gethostname(),
        "platform": platform.system(),
        "platform_version": os_release() or platform.release(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "agent_version": __version__,
    }
    return {k: v for k, v in facts.items() if v}
