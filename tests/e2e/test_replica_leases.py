"""Two server replicas on one PostgreSQL database, an agent held by the first: the
second's restart leaves that node alone (no ConnectionLost, no status event), and when
the first dies, the node becomes ConnectionLost once its lease runs out."""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import PG_ENV, Fleet, ServerProcess, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
LEASE_S = 8  # long enough that a loaded machine never misses a renewal (every third)


def _status_events(client, node_id):
    events = client.list_events(detail_type="Node Status-change Notification", limit=1000)
    return [e.detail["ping-status"] for e in reversed(events) if e.detail["node-id"] == node_id]


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_a_replica_restart_leaves_others_nodes_alone_and_a_dead_ones_lease_runs_out(tmp_path):
    env = {**KEY, "FLEETRUN_REPLICA_LEASE_S": str(LEASE_S), "FLEETRUN_RATE_LIMIT_PER_S": "0"}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    through_b = None
    try:
        second.start()
        (agent,) = fleet.add_agents(1)  # knows only the first replica's address
        through_b = second.client(fleet.server.token)
        assert _status_events(through_b, agent.node_id) == ["Online"]

        second.restart()  # a rolling restart's step: the first still holds the node
        time.sleep(LEASE_S + 1)  # longer than a lease: the first renews its own
        node = through_b.get_node(agent.node_id)
        assert node.ping_status == "Online"
        assert _status_events(through_b, agent.node_id) == ["Online"]

        fleet.server.kill()  # no goodbye: only its lease running out tells
        wait_for(
            lambda: through_b.get_node(agent.node_id).ping_status == "ConnectionLost",
            timeout_s=LEASE_S * 5,
            what="the dead replica's node to be marked lost",
        )
        assert _status_events(through_b, agent.node_id) == ["Online", "ConnectionLost"]
    finally:
        if through_b is not None:
            through_b.close()
        second.stop()
        fleet.close()
