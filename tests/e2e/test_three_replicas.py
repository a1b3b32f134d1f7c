"""Three replicas on PostgreSQL and one S3 output store, behind HAProxy with the shipped
configuration, and twelve real agents that know only the balancer's address (so they
spread over the replicas):

- a command sent through each replica runs on every agent, whichever replica holds it;
- a burst of 12 commands of 12 nodes through all three completes with no transaction
  retried for a deadlock;
- a replica killed (kill -9) in the middle of a fan-out: every agent carries on through
  the balancer, every invocation ends once (one terminal event each), no script starts
  twice, and every replica serves every invocation's output byte-exact;
- a rolling restart of the three: no status event for an agent its replica did not
  drop."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

import httpx
import psycopg
import pytest

from fleetrun.sdk import Client
from tests.e2e.balancer import HAProxy
from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
AGENTS = 12
LINES = b"".join(b"line %02d\n" % i for i in range(1, 31))

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database"
)


def _sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return list(conn.execute(query).fetchall())


def _holders(url: str) -> dict[str, str]:
    """node id -> the replica holding its session."""
    rows = _sql(url, "SELECT id, replica_id FROM nodes WHERE replica_id IS NOT NULL")
    return {str(n): str(r) for n, r in rows}


def _deadlocks(replica: ServerProcess, token: str) -> float:
    text = httpx.get(f"{replica.url}/metrics", headers={"authorization": f"Bearer {token}"}).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('fleetrun_db_retries_total{reason="deadlock"}')
    )


def _send_everywhere(url: str, token: str, nodes: list[str], script: str) -> str:
    with Client(url, token) as client:
        command = client.send_command(script=script, node_ids=nodes)
        done = client.wait(command.id, timeout_s=120)
        assert done.status == "Success", done
        return command.id


@pytest.mark.timeout(600)  # fifteen processes on two cores: minutes, not seconds
def test_three_replicas_twelve_agents_kills_bursts_and_a_rolling_restart(tmp_path, s3):
    env = {
        **KEY,
        "FLEETRUN_RATE_LIMIT_PER_S": "0",
        "FLEETRUN_S3_ENDPOINT_URL": s3,
        "FLEETRUN_S3_ACCESS_KEY_ID": "AKIDFLEETRUNTEST",
        "FLEETRUN_S3_SECRET_ACCESS_KEY": "s3-secret-key-not-logged",
        "FLEETRUN_OUTPUT_STORE": "s3://logs/three",
    }
    fleet = Fleet(tmp_path, env=env).start()
    assert fleet.server.db is not None
    url = fleet.server.db.url
    replicas = [fleet.server] + [
        ServerProcess(tmp_path / name, env=env, db=fleet.server.db) for name in ("b", "c")
    ]
    proxy = HAProxy(tmp_path / "haproxy", [r.url.removeprefix("http://") for r in replicas])
    try:
        for replica in replicas[1:]:
            replica.start()
        proxy.start()
        token = fleet.server.token
        activation = fleet.client.create_activation(registration_limit=AGENTS)
        agents = [
            AgentProcess(fleet.server, tmp_path / f"agent{n}", f"node{n:02d}", servers=[proxy.url])
            for n in range(1, AGENTS + 1)
        ]
        fleet.agents += agents
        for first in range(0, AGENTS, 6):
            group = agents[first : first + 6]
            running = [a.begin_register(activation.id, activation.code) for a in group]
            for agent, proc in zip(group, running, strict=True):
                agent.finish_register(proc)
        for agent in agents:
            agent.start()
        fleet.wait_online(agents, timeout_s=120)
        nodes = [str(a.node_id) for a in agents]
        held = _holders(url)
        assert len(set(held.values())) == 3, held  # the balancer spread them

        # Through each replica, to every agent, wherever it is held.
        for replica in replicas:
            _send_everywhere(replica.url, token, nodes, "echo through")

        # A burst: 12 commands of 12 nodes, 4 through each replica, at once.
        before = sum(_deadlocks(r, token) for r in replicas)
        failures: list[BaseException] = []

        def burst(replica: ServerProcess) -> None:
            try:
                for _ in range(4):
                    _send_everywhere(replica.url, token, nodes, "echo burst")
            except BaseException as exc:  # reported by the test
                failures.append(exc)

        threads = [threading.Thread(target=burst, args=(r,)) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert not failures, failures
        assert sum(_deadlocks(r, token) for r in replicas) == before

        # kill -9 of a replica in the middle of a fan-out.
        runs = tmp_path / "runs"
        script = f"echo run >> {runs}; for i in $(seq -w 1 30); do echo line $i; sleep 0.1; done"
        with Client(proxy.url, token) as through_proxy:
            command = through_proxy.send_command(script=script, node_ids=nodes)
        wait_for(
            lambda: runs.exists() and len(runs.read_text().splitlines()) >= AGENTS // 2,
            what="the scripts to start",
        )
        victim = replicas[2]
        victim.kill()
        with replicas[0].client(token) as a:
            done = a.wait(command.id, timeout_s=120)
            assert done.status == "Success", done
            events = a.list_events(
                detail_type="Command Invocation Status-change Notification", limit=1000
            )
        ended = [
            e.detail["node-id"]
            for e in events
            if e.detail["command-id"] == command.id and e.detail["status"] == "Success"
        ]
        assert sorted(ended) == sorted(nodes)  # each invocation ended once
        assert runs.read_text().splitlines() == ["run"] * AGENTS  # no script started twice
        victim.start()
        wait_for(lambda: proxy.up(3), timeout_s=30, what="HAProxy to use the third again")
        for replica in replicas:
            with replica.client(token) as client:
                for node in nodes:
                    assert client.get_output(command.id, node) == LINES, (replica.url, node)

        # A rolling restart: only the agents a restarting replica held see a status change.
        _wait_online(proxy.url, token, nodes)
        for n, replica in enumerate(replicas, 1):
            mine = {node for node, r in _holders(url).items() if r == _replica_id(replica)}
            since = time.time()
            replica.stop()
            replica.start()
            wait_for(lambda n=n: proxy.up(n), timeout_s=30, what="HAProxy to use it again")
            _wait_online(proxy.url, token, nodes)
            changed = _status_changes(proxy.url, token, since)
            assert changed <= mine, (n, changed - mine)
    finally:
        proxy.stop()
        for replica in replicas[1:]:
            replica.stop()  # their database is the fleet's: dropped with it
        fleet.close()


def _replica_id(replica: ServerProcess) -> str:
    """The id the replica runs under, as its /readyz says."""
    return str(httpx.get(f"{replica.url}/readyz").json()["replica"])


def _wait_online(url: str, token: str, nodes: list[str]) -> None:
    def online() -> bool:
        with Client(url, token) as client:  # a new connection: replicas restart
            return {n.id for n in client.list_nodes(ping_status="Online")} >= set(nodes)

    wait_for(online, timeout_s=120, what="every agent Online")


def _status_changes(url: str, token: str, since: float) -> set[str]:
    """The nodes with a status event since `since` (a time.time())."""
    with Client(url, token) as client:
        events = client.list_events(detail_type="Node Status-change Notification", limit=1000)
    return {
        str(e.detail["node-id"])
        for e in events
        if datetime.fromisoformat(str(e.time).replace("Z", "+00:00")).timestamp() >= since
    }
