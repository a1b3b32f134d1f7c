"""A systemd unit for the agent.

KillMode=mixed: on stop, systemd sends SIGTERM to the agent alone (it stops what runs
and records it), then SIGKILL to whatever is left in the unit's cgroup, so no script
outlives the service. Delegate=yes: the service's cgroup subtree is the agent's to
manage, for its one cgroup per invocation (cgroups.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

UNIT_NAME = "fleetrun-agent.service"


def unit(state_dir: Path) -> str:
    state = state_dir.resolve()
    return f"""[Unit]
Description=fleetrun agent: runs commands sent by a fleetrun server
Documentation=fleetrun-agent --help
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={sys.executable} -m fleetrun.agent run --state-dir {state}
Environment=FLEETRUN_AGENT_STATE_DIR={state}
# Local configuration (the node's last word): {state}/config.toml
# Change it with: fleetrun-agent config set KEY VALUE --state-dir {state}
Restart=on-failure
RestartSec=5
KillMode=mixed
# The agent makes one cgroup per invocation under the service's own.
Delegate=yes
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
"""


def install(text: str, unit_dir: Path) -> Path:
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / UNIT_NAME
    path.write_text(text)
    path.chmod(0o644)
    return path
