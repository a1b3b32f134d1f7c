"""Platform facts the agent reports: what the node is, never what it holds."""

from __future__ import annotations

import platform
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
