"""The agent stays light: importing it loads none of the server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = (
    "sqlalchemy",
    "starlette",
    "fastapi",
    "uvicorn",
    "alembic",
    "aiosqlite",
    "psycopg",
    "httpx",
    "rich",  # the operator CLI's tables (click is shared: both command lines use it)
)


def test_agent_imports_no_server_dependency():
    code = (
        "import json, sys\n"
        "import fleetrun.agent.cli, fleetrun.agent.channel, fleetrun.agent.daemon\n"
        "import fleetrun.agent.executor, fleetrun.agent.journal, fleetrun.agent.register\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert "fleetrun" in loaded
    assert not loaded & set(SERVER_ONLY), sorted(loaded & set(SERVER_ONLY))
    assert "prometheus_client" not in loaded  # only when --metrics-address asks for it
