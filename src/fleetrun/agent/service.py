"""A systemd unit for the agent.

KillMode=mixed: on stop, systemd sends SIGTERM to the agent alone (it stops what runs
and records it), then SIGKILL to whatever is left in the unit's cgroup, so no script
outlives the service. Delegate=yes: the service's cgroup subtree is the agent's to
manage, for its one cgroup per invocation (cgroups.py).

The agent exits with EXIT_TERMINAL when the server will never take it as it is (its node
was deleted, or its protocol is older than the server supports): restarting cannot help,
so the unit does not (RestartPreventExitStatus) until the operator acts.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

UNIT_NAME = "fleetrun-agent.service"
EXIT_TERMINAL = 78  # sysexits' EX_CONFIG: register again, or upgrade the agent
DEPS_ENV = "FLEETRUN_AGENT_DEPS"  # the single-file agent's dependencies (its __main__)


def unit(state_dir: Path, server: str | None = None) -> str:
    """The unit for the agent of `state_dir`; `server`, its server's URL once it is
    registered, gives the unit a Documentation= link to that server's API page."""
    state = state_dir.resolve()
    docs = f"Documentation={escape(server.rstrip('/'))}/docs\n" if server else ""
    command = [*launcher(), "run", "--state-dir", str(state)]
    return f"""[Unit]
Description=fleetrun agent: runs commands sent by a fleetrun server
{docs}Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_line(command)}
Environment={escape(shlex.quote(f"FLEETRUN_AGENT_STATE_DIR={state}"))}
{_deps_line()}# Local configuration (the node's last word): {state}/config.toml
# Change it with: fleetrun-agent config set KEY VALUE --state-dir {state}
Restart=on-failure
RestartSec=5
# Exit {EXIT_TERMINAL}: the node was deleted or the agent is too old for the server.
RestartPreventExitStatus={EXIT_TERMINAL}
KillMode=mixed
# The agent makes one cgroup per invocation under the service's own.
Delegate=yes
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
"""


def launcher() -> list[str]:
    """How to start this same agent: the archive it runs from when it is the
    single-file agent, else its package."""
    archive = _archive(Path(__file__))
    if archive is not None:
        return [sys.executable, str(archive)]
    return [sys.executable, "-m", "fleetrun.agent"]


def _archive(path: Path) -> Path | None:
    for parent in path.parents:
        if parent.is_file():
            return parent.resolve()
    return None


def _deps_line() -> str:
    deps = os.environ.get(DEPS_ENV)
    if not deps or _archive(Path(__file__)) is None:
        return ""
    return f"Environment={escape(shlex.quote(f'{DEPS_ENV}={Path(deps).resolve()}'))}\n"


def escape(text: str) -> str:
    """Taken literally by systemd: `%` starts a specifier and `$` a variable."""
    return text.replace("%", "%%").replace("$", "$$")


class ServiceError(Exception):
    """The unit cannot be written: the message says why and what to do."""


def exec_line(argv: list[str]) -> str:
    """A command line for ExecStart=: each word shell-quoted, with `%` and `$` taken
    literally."""
    return " ".join(escape(shlex.quote(word)) for word in argv)


def install(text: str, unit_dir: Path, name: str = UNIT_NAME) -> Path:
    """Write a unit (this agent's, or the server's: the same steps and refusal)."""
    path = unit_dir / name
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    except OSError as exc:
        raise ServiceError(
            f"Cannot write {path}: {(exc.strerror or str(exc)).lower()}; give a --unit-dir "
            "this user may write (systemd reads /etc/systemd/system, written as root), or "
            "use --print."
        ) from exc
    return path
