"""Two replicas on one PostgreSQL database behind HAProxy with the shipped configuration
(packaging/haproxy/fleetrun.cfg), and an agent that knows only the balancer's address:
commands sent through the balancer run, and keep running when first one replica and
then the other is killed (kill -9), each time on the agent's one session wherever it
moved, with every invocation ending once."""

from __future__ import annotations

import os

import pytest

from fleetrun.sdk import Client
from tests.e2e.balancer import HAProxy
from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}


def _run(url: str, token: str, node_id: str, text: str) -> None:
    """A command sent through the balancer on a new connection (one kept open from
    before was pinned to the replica it reached, and a kill ends it)."""
    with Client(url, token) as client:
        command = client.send_command(script=f"echo {text}", node_ids=[node_id])
        done = client.wait(command.id, timeout_s=90)
        assert done.status == "Success", done
        assert client.get_invocation(command.id, node_id).stdout == f"{text}\n"


def _answers(replica: ServerProcess, node_id: str) -> bool:
    with replica.client() as client:
        return client.get_node(node_id).id == node_id


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_an_agent_behind_haproxy_carries_on_when_either_replica_dies(tmp_path):
    env = {**KEY, "FLEETRUN_RATE_LIMIT_PER_S": "0"}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    replicas = [fleet.server, second]
    proxy = HAProxy(tmp_path / "haproxy", [r.url.removeprefix("http://") for r in replicas])
    client = None
    try:
        second.start()
        proxy.start()
        client = Client(proxy.url, fleet.server.token)
        activation = client.create_activation(registration_limit=1)
        client.close()
        agent = AgentProcess(fleet.server, tmp_path / "agent", "node01", servers=[proxy.url])
        fleet.agents.append(agent)
        agent.register(activation.id, activation.code)
        agent.start()
        fleet.wait_online([agent])
        token = fleet.server.token
        _run(proxy.url, token, agent.node_id, "both")
        for n, victim in enumerate(replicas, 1):
            victim.kill()
            _run(proxy.url, token, agent.node_id, "after-a-kill")
            victim.start()  # back, before the other goes
            wait_for(lambda v=victim: _answers(v, agent.node_id), what="the replica back")
            # ...and in HAProxy's eyes too: until then the other is the only one it uses.
            wait_for(lambda n=n: proxy.up(n), timeout_s=30, what="HAProxy to use it again")
        with Client(proxy.url, token) as last:
            commands = last.list_commands()
        assert sorted(c.status for c in commands) == ["Success"] * 3
    finally:
        if client is not None:
            client.close()
        proxy.stop()
        second.stop()
        fleet.close()
