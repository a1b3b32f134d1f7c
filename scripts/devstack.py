"""`make up` and `make down`: a server and one enrolled agent on this machine.

up    start the server (SQLite under .fleetrun/server), enrol and start one agent
      (.fleetrun/agent), send a demo command and print its output; both keep
      running in the background. Running it again reuses what is running.
down  stop both (their data stays; `make clean` removes it).

FLEETRUN_PORT picks another port; FLEETRUN_DEVSTACK_DIR another directory than
.fleetrun. That directory is its user's alone (0700): `.fleetrun/env` holds the
administrator's token (0600), and puts the virtual environment's bin on PATH.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("FLEETRUN_DEVSTACK_DIR") or ROOT / ".fleetrun")
PORT = int(os.environ.get("FLEETRUN_PORT", "8470"))
URL = f"http://127.0.0.1:{PORT}"
PY = sys.executable
DEMO_TIMEOUT_S = 90  # the demo waits at most 60 s; this is the belt to its braces


def _pid(name: str) -> int | None:
    path = STATE / f"{name}.pid"
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _spawn(name: str, args: list[str]) -> None:
    log = (STATE / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [PY, *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
    )
    (STATE / f"{name}.pid").write_text(str(proc.pid))


def _wait(check, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.2)
    sys.exit(f"make up: {what} did not happen within {timeout_s:.0f}s; see {STATE}/*.log")


def _healthy() -> bool:
    return httpx.get(f"{URL}/healthz", timeout=1).status_code == 200


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds a token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file made earlier by an older version may be 0644
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _env_file(token: str) -> str:
    """What `source .fleetrun/env` sets: the server, the token, and this virtual
    environment's bin on PATH (once, however often it is sourced), so that `fleetrun`
    is found as the README's tour types it."""
    lines = [f"export FLEETRUN_SERVER={URL}", f"export FLEETRUN_TOKEN={token}"]
    bin_dir = Path(PY).parent
    if (bin_dir / "fleetrun").exists():
        quoted = shlex.quote(str(bin_dir))
        lines.append(f'case ":$PATH:" in *:{quoted}:*) ;; *) export PATH={quoted}:"$PATH" ;; esac')
    return "\n".join(lines) + "\n"


def up() -> None:
    STATE.mkdir(exist_ok=True, mode=0o700)
    STATE.chmod(0o700)
    if _pid("server") is None:
        try:
            if _healthy():
                sys.exit(
                    f"make up: something else already answers on port {PORT}; stop it or "
                    "set FLEETRUN_PORT to another port."
                )
        except httpx.HTTPError:
            pass
        print(f"Starting the server on {URL} (data in .fleetrun/server) ...")
        _spawn(
            "server",
            ["-m", "fleetrun", "server", "--port", str(PORT), "--data-dir", str(STATE / "server")],
        )
    _wait(_healthy, "the server answering")
    token = (STATE / "server" / "admin.token").read_text().strip()
    _write_private(STATE / "env", _env_file(token))
    env = {**os.environ, "FLEETRUN_SERVER": URL, "FLEETRUN_TOKEN": token}
    agent_dir = STATE / "agent"
    if not (agent_dir / "identity.json").exists():
        print("Enrolling this machine as a node ...")
        made = subprocess.run(
            [
                PY,
                "-m",
                "fleetrun",
                "activations",
                "create",
                "--tag",
                "env=dev",
                "--name",
                "local",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        activation = json.loads(made.stdout)
        subprocess.run(
            [
                PY,
                "-m",
                "fleetrun.agent",
                "register",
                "--state-dir",
                str(agent_dir),
                "--server",
                URL,
                "--activation-id",
                activation["id"],
                "--activation-code",
                activation["code"],
            ],
            check=True,
        )
    if _pid("agent") is None:
        print("Starting the agent (state in .fleetrun/agent) ...")
        _spawn("agent", ["-m", "fleetrun.agent", "run", "--state-dir", str(agent_dir)])
    node_id = json.loads((agent_dir / "identity.json").read_text())["node_id"]

    def online() -> bool:
        node = httpx.get(
            f"{URL}/v1/nodes/{node_id}", headers={"authorization": f"Bearer {token}"}, timeout=2
        ).json()
        return bool(node.get("ping_status") == "Online")

    _wait(online, "the agent coming online")
    print("\nSending a demo command to this machine's node:\n")
    # Only the local node, which was just seen Online, with a short delivery deadline and a
    # bounded wait: other nodes enrolled here earlier may be offline, and `make up` must
    # never hang on them.
    try:
        demo = subprocess.run(
            [
                PY,
                "-m",
                "fleetrun",
                "send",
                "--node",
                node_id,
                "--comment",
                "make up demo",
                "--delivery-timeout",
                "30",
                "--wait",
                "--wait-timeout",
                "60s",
                "--unreachable-after",
                "30s",
                "--script",
                'echo "Hello from $(hostname), node $FLEETRUN_NODE_ID"; uname -sr',
            ],
            env=env,
            timeout=DEMO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        sys.exit(
            f"make up: the demo command did not finish in {DEMO_TIMEOUT_S}s; see {STATE}/*.log"
        )
    if demo.returncode != 0:
        sys.exit("make up: the demo command did not succeed; see .fleetrun/*.log")
    print(
        "\nfleetrun is up: the server and one agent run in the background.\n"
        "  Use it from this shell:   source .fleetrun/env   (server, token, and fleetrun on PATH)\n"
        "  Then try:                 fleetrun nodes list\n"
        "  Stop it:                  make down\n"
    )


def down() -> None:
    stopped = []
    for name in ("agent", "server"):
        pid = _pid(name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        (STATE / f"{name}.pid").unlink(missing_ok=True)
        stopped.append(name)
    print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1]]()
