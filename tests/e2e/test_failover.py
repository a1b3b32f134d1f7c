"""An agent that knows several server URLs tries them in turn: registered with a dead
address first, it registers and connects through the next; on PostgreSQL, when the
replica holding it dies, it carries on through another and runs what is sent there."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.harness import PG_ENV, AgentProcess, Fleet, ServerProcess, free_port, wait_for


def _status(agent: AgentProcess) -> dict[str, object]:
    out = subprocess.run(
        [*agent.command, "status", "--state-dir", str(agent.state_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(out.stdout)


def _enrol(fleet: Fleet, servers: list[str]) -> AgentProcess:
    activation = fleet.client.create_activation(registration_limit=1)
    agent = AgentProcess(fleet.server, fleet.root / "agent", "node01", servers=servers)
    fleet.agents.append(agent)
    agent.register(activation.id, activation.code)
    return agent.start()


def test_an_agent_registers_and_connects_through_the_url_that_answers(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    fleet = Fleet(tmp_path).start()
    try:
        agent = _enrol(fleet, [dead, fleet.server.url])
        fleet.wait_online([agent])
        status = _status(agent)
        assert status["servers"] == [dead, fleet.server.url]
        assert status["server"] == fleet.server.url  # the one it talks to now
        command = fleet.client.send_command(script="echo through", node_ids=[agent.node_id])
        done = fleet.client.wait(command.id, timeout_s=60)
        assert done.status == "Success"
    finally:
        fleet.close()


def test_registering_with_no_url_that_answers_says_so(tmp_path):
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    fleet = Fleet(tmp_path).start()
    try:
        activation = fleet.client.create_activation(registration_limit=1)
        agent = AgentProcess(fleet.server, tmp_path / "agent", "node01", servers=dead)
        proc = agent.begin_register(activation.id, activation.code)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert f"Cannot reach the server at {dead[1]}" in err
        assert "Traceback" not in err
    finally:
        fleet.close()


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
def test_when_its_replica_dies_an_agent_carries_on_through_another(tmp_path):
    env = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
    fleet = Fleet(tmp_path, env=env).start()
    second = ServerProcess(tmp_path / "b", env=env, db=fleet.server.db)
    through_b = None
    try:
        second.start()
        agent = _enrol(fleet, [fleet.server.url, second.url])
        fleet.wait_online([agent])
        assert _status(agent)["server"] == fleet.server.url
        fleet.server.kill()
        through_b = second.client(fleet.server.token)
        wait_for(
            lambda: (
                _status(agent).get("server") == second.url
                and through_b.get_node(agent.node_id).ping_status == "Online"
            ),
            timeout_s=60,
            what="the agent to connect through the second replica",
        )
        command = through_b.send_command(script="echo carried", node_ids=[agent.node_id])
        done = through_b.wait(command.id, timeout_s=60)
        assert done.status == "Success"
        assert through_b.get_invocation(command.id, agent.node_id).stdout == "carried\n"
    finally:
        if through_b is not None:
            through_b.close()
        second.stop()
        fleet.close()
