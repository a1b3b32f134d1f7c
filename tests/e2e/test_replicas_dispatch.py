"""Two replicas on PostgreSQL, an agent held by the first. What is asked through the
second reaches the agent through the bus at once, not on the first's periodic pass
(set here to a minute, and the lease to two, so that only the bus can be quick): a
command runs without passing through Delayed, a cancel stops the script, a node
deleted loses its session, and a wait through the second returns as the command
ends on the first."""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import PG_ENV, two_replicas, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
ENV = {
    **KEY,
    "FLEETRUN_RATE_LIMIT_PER_S": "0",
    "FLEETRUN_INVOKE_RESEND_S": "60",
    "FLEETRUN_REPLICA_LEASE_S": "120",
}
QUICK_S = 8.0  # far under the passes' 60 s and the renewal's 40 s, with room for load

pytestmark = pytest.mark.skipif(
    not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database"
)


def test_a_cancel_through_another_replica_stops_the_script(tmp_path):
    with two_replicas(tmp_path, ENV) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        client = fleet.client
        command = client.send_command(script="sleep 120", node_ids=[agent.node_id])
        wait_for(
            lambda: client.get_invocation(command.id, agent.node_id).status == "InProgress",
            what="the script to start",
        )
        with second.client(fleet.server.token) as through_b:
            started = time.monotonic()
            through_b.cancel_command(command.id)
            done = through_b.wait(command.id, timeout_s=60)
            assert time.monotonic() - started < QUICK_S
            assert done.status == "Cancelled"
            assert through_b.get_invocation(command.id, agent.node_id).status == "Cancelled"


def test_a_command_through_another_replica_is_not_delayed(tmp_path):
    with two_replicas(tmp_path, ENV) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        with second.client(fleet.server.token) as through_b:
            started = time.monotonic()
            command = through_b.send_command(script="echo across", node_ids=[agent.node_id])
            assert through_b.wait(command.id, timeout_s=60).status == "Success"
            assert time.monotonic() - started < QUICK_S
            events = through_b.list_events(
                detail_type="Command Invocation Status-change Notification", limit=1000
            )
        statuses = [
            e.detail["status"] for e in reversed(events) if e.detail["command-id"] == command.id
        ]
        assert "Delayed" not in statuses
        assert statuses[-1] == "Success"


def test_a_node_deleted_through_another_replica_loses_its_session(tmp_path):
    with two_replicas(tmp_path, ENV) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        with second.client(fleet.server.token) as through_b:
            through_b.delete_node(agent.node_id)
        assert agent.proc is not None
        wait_for(
            lambda: agent.proc.poll() is not None,
            timeout_s=QUICK_S,
            what="the deleted node's agent to be told and stop",
        )
        assert "does not know node" in agent.log_tail()


def test_a_wait_through_another_replica_returns_as_the_command_ends(tmp_path):
    with two_replicas(tmp_path, ENV) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        command = fleet.client.send_command(script="sleep 2", node_ids=[agent.node_id])
        with second.client(fleet.server.token) as through_b:
            started = time.monotonic()
            assert through_b.wait(command.id, timeout_s=60).status == "Success"
            waited = time.monotonic() - started
        ended = fleet.client.get_invocation(command.id, agent.node_id)
        assert ended.status == "Success"
        assert waited < QUICK_S  # woken by the first's commit, not a long-poll's end
