"""A systemd unit for the server, hardened.

The server needs to write only its data directory, listen on one port and reach its
database, the object store and event targets; everything else is taken away from it:
a dedicated user, a read-only system (ProtectSystem=strict) with the data dir as its
StateDirectory (made and owned for that user by systemd), no new privileges, no
capabilities, no devices, no kernel tunables, and only the system calls a service
needs. Settings other than those on the command line come from an environment file of
FLEETRUN_* variables (the place for secrets such as FLEETRUN_SMTP_PASSWORD, readable by
root alone: systemd reads it before dropping privileges).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleetrun.agent import service as agent_service
from fleetrun.agent.service import ServiceError, escape, exec_line

__all__ = ["UNIT_NAME", "ServiceError", "exec_line", "install", "unit"]

UNIT_NAME = "fleetrun.service"
STATE_ROOT = Path("/var/lib")
# The Python running this may live under a home directory (a user's virtual
# environment): then the service may read homes, but not write them.
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))


def unit(
    *,
    data_dir: Path,
    user: str,
    server_args: list[str],
    environment_file: Path,
    documentation: str | None = None,
) -> str:
    data = Path(data_dir)
    if not data.is_absolute():
        raise ServiceError(f"The data directory must be an absolute path, not {data_dir}.")
    if not Path(environment_file).is_absolute():
        raise ServiceError(
            f"The environment file must be an absolute path (systemd reads it before the "
            f"service has a working directory), not {environment_file}."
        )
    command = [sys.executable, "-m", "fleetrun", "server", "--data-dir", str(data), *server_args]
    docs = f"Documentation={escape(documentation)}\n" if documentation else ""
    return f"""[Unit]
Description=fleetrun server: the API, the agent gateway and the dispatcher
{docs}Wants=network-online.target
After=network-online.target postgresql.service

[Service]
Type=exec
ExecStart={exec_line(command)}
EnvironmentFile=-{escape(str(environment_file))}
User={user}
Group={user}
{_data_dir_lines(data)}
UMask=0077
Restart=on-failure
RestartSec=5
TimeoutStopSec=30
# Each connected agent holds one socket.
LimitNOFILE=65536
# Hardening: what the server does not need, it does not get.
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome={_protect_home()}
PrivateTmp=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
# A call outside that set fails with EPERM instead of killing the server.
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def _data_dir_lines(data: Path) -> str:
    """Under /var/lib, the data dir is the unit's StateDirectory: systemd makes it and
    gives it to the service's user. Elsewhere it must exist and be writable by that
    user, and is the one path the service may write."""
    if data.is_relative_to(STATE_ROOT) and data != STATE_ROOT:
        return f"StateDirectory={data.relative_to(STATE_ROOT)}\nStateDirectoryMode=0700"
    return f"ReadWritePaths={escape(str(data))}"


def _protect_home() -> str:
    executable = Path(sys.executable)
    return "read-only" if any(executable.is_relative_to(h) for h in HOME_ROOTS) else "yes"


def install(text: str, unit_dir: Path) -> Path:
    return agent_service.install(text, unit_dir, name=UNIT_NAME)
