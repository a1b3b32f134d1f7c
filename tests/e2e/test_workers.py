"""`fleetrun server --workers N`: N replicas of the server on one port of one machine,
each a process of its own on PostgreSQL. Both serve and hold agents; a worker killed
(kill -9) is started again and its agents carry on; SIGTERM stops every worker. On
SQLite the flag is refused with what to do."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.harness import PG_ENV, PYTHON, Fleet, spawned_children, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}


def _workers(parent: int) -> set[int]:
    return set(spawned_children(parent))


def _live_replicas(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute("SELECT count(*) FROM replicas WHERE lease_until > now()").fetchone()
        return int(row[0]) if row else 0


def _run_everywhere(fleet: Fleet, text: str) -> None:
    nodes = [a.node_id for a in fleet.agents]
    command = fleet.client.send_command(script=f"echo {text}", node_ids=nodes)
    done = fleet.client.wait(command.id, timeout_s=90)
    assert done.status == "Success", done
    for node in nodes:
        assert fleet.client.get_invocation(command.id, node).stdout == f"{text}\n"


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="workers share a PostgreSQL database")
def test_workers_serve_as_replicas_and_one_killed_is_started_again(tmp_path):
    env = {**KEY, "FLEETRUN_WORKERS": "2", "FLEETRUN_RATE_LIMIT_PER_S": "0"}
    fleet = Fleet(tmp_path, env=env).start()
    try:
        server = fleet.server
        assert server.proc is not None and server.db is not None
        workers = wait_for(
            lambda: len(w := _workers(server.proc.pid)) == 2 and w, what="two workers"
        )
        wait_for(lambda: _live_replicas(server.db.url) == 2, what="two replicas")
        fleet.add_agents(6)
        _run_everywhere(fleet, "both")

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        again = wait_for(
            lambda: len(w := _workers(server.proc.pid)) == 2 and victim not in w and w,
            timeout_s=60,
            what="the killed worker started again",
        )
        fleet.wait_online(fleet.agents)
        _run_everywhere(fleet, "after-a-kill")
        assert "starting it again" in server.log_tail(200)

        server.stop()  # SIGTERM to the supervisor
        assert server.proc.returncode == 0
        assert not _workers(server.proc.pid) and not any(
            Path(f"/proc/{pid}").exists() for pid in again
        )
    finally:
        fleet.close()


def test_workers_on_sqlite_are_refused_with_what_to_do(tmp_path):
    done = subprocess.run(
        [PYTHON, "-m", "fleetrun", "server", "--workers", "2", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")},
        check=False,
    )
    assert done.returncode != 0
    assert "--workers 2 needs PostgreSQL" in done.stderr
    assert "Traceback" not in done.stderr
