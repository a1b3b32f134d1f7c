"""Two replicas on PostgreSQL, an agent held by the first. A command sent through the
second runs without passing through Delayed (the second does not take a node the first
holds for offline); a cancel sent through the second reaches the agent on the holder's
next pass, and the script stops long before its end; a node deleted through the second
loses its session on the first within a lease renewal."""

from __future__ import annotations

import os
import time

import pytest

from tests.harness import PG_ENV, two_replicas, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
ENV = {**KEY, "FLEETRUN_RATE_LIMIT_PER_S": "0", "FLEETRUN_INVOKE_RESEND_S": "2"}

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
            assert time.monotonic() - started < 30  # not the script's 120 s
            assert done.status == "Cancelled"
            assert through_b.get_invocation(command.id, agent.node_id).status == "Cancelled"


def test_a_command_through_another_replica_is_not_delayed(tmp_path):
    with two_replicas(tmp_path, ENV) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        with second.client(fleet.server.token) as through_b:
            command = through_b.send_command(script="echo across", node_ids=[agent.node_id])
            assert through_b.wait(command.id, timeout_s=60).status == "Success"
            events = through_b.list_events(
                detail_type="Command Invocation Status-change Notification", limit=1000
            )
        statuses = [
            e.detail["status"] for e in reversed(events) if e.detail["command-id"] == command.id
        ]
        assert "Delayed" not in statuses
        assert statuses[-1] == "Success"


def test_a_node_deleted_through_another_replica_loses_its_session(tmp_path):
    env = {**ENV, "FLEETRUN_REPLICA_LEASE_S": "6"}
    with two_replicas(tmp_path, env) as (fleet, second):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        with second.client(fleet.server.token) as through_b:
            through_b.delete_node(agent.node_id)
        assert agent.proc is not None
        wait_for(
            lambda: agent.proc.poll() is not None,
            timeout_s=30,
            what="the deleted node's agent to be told and stop",
        )
        assert "does not know node" in agent.log_tail()
