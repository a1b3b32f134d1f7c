"""Metrics and logs of real processes: a server logging JSON at debug level, an agent
serving its own metrics, a command with a secret parameter run through both. Every
line of both logs is one JSON object with the context fields where they apply, and
neither log holds the secret or any token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import harness
from tests.conftest import _attach_logs

SECRET = "correct-horse-7c1e-battery"
METRICS_TOKEN = "scrape-token-5d0b8e"


@pytest.fixture
def json_fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[harness.Fleet]:
    f = harness.Fleet(
        tmp_path,
        env={"FLEETRUN_LOG_FORMAT": "json", "FLEETRUN_METRICS_TOKEN": METRICS_TOKEN},
        extra_args=["--log-level", "debug"],
        tls=True,  # the private CA's fingerprint line is JSON too
    ).start()
    try:
        yield f
    finally:
        _attach_logs(request, f)
        f.close()


def json_lines(path: Path) -> list[dict]:
    """Every line of the log, each of which must be one JSON object."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return entries


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_json_logs_carry_context_and_no_secret_and_the_agent_serves_metrics(json_fleet):
    fleet = json_fleet
    metrics_port = harness.free_port()
    agent = fleet.add_agent(start=False)
    agent.args = [
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
    ]
    agent.start()
    fleet.wait_online([agent])
    agent_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    before = samples(httpx.get(agent_metrics, timeout=5).text)
    assert before[("fleetrun_agent_connected", ())] == 1

    client = fleet.client
    command = client.send_command(
        script='echo "got $db_password"',
        node_ids=[agent.node_id],
        secret_parameters={"db_password": SECRET},
    )
    assert client.wait(command.id, timeout_s=60).status == "Success"
    assert client.get_invocation(command.id, agent.node_id).stdout == "got ***\n"

    # The agent's endpoint: its families, and the counters moved.
    after = samples(httpx.get(agent_metrics, timeout=5).text)
    assert after[("fleetrun_agent_invocations_total", (("outcome", "Success"),))] == 1
    assert after[("fleetrun_agent_invocations_running", ())] == 0
    assert after[("fleetrun_agent_sessions_total", ())] == 1
    for name in ("fleetrun_agent_frames_sent_total", "fleetrun_agent_sent_bytes_total"):
        assert after[(name, ())] > before[(name, ())], name

    # The server's, with the metrics token, over the network.
    scraped = httpx.get(
        f"{fleet.server.url}/metrics",
        headers={"authorization": f"Bearer {METRICS_TOKEN}", "x-request-id": "scrape-1"},
        timeout=10,
        verify=fleet.server.verify,
    )
    assert scraped.status_code == 200
    assert scraped.headers["x-request-id"] == "scrape-1"
    server = samples(scraped.text)
    assert server[("fleetrun_commands", (("status", "Success"),))] == 1
    assert server[("fleetrun_command_duration_seconds_count", (("status", "Success"),))] == 1
    assert server[("fleetrun_output_bytes_total", ())] == len("got ***\n")

    # A refusal logs one line, with the request's id, its principal and the command.
    client.create_principal("nobody")
    token = client.create_token("nobody").token
    denied = httpx.get(
        f"{fleet.server.url}/v1/commands/{command.id}",
        headers={"authorization": f"Bearer {token}", "x-request-id": "trace-42"},
        timeout=10,
        verify=fleet.server.verify,
    )
    assert denied.status_code == 403
    assert denied.headers["x-request-id"] == "trace-42"
    fleet.close()  # both processes flush and exit: their logs are complete

    server_log = json_lines(fleet.server.log_path)
    assert {"time", "level", "logger", "message"} <= set(server_log[0])
    assert any(e["logger"].startswith("uvicorn") for e in server_log)  # uvicorn's too
    refusal = [e for e in server_log if e.get("request_id") == "trace-42"]
    assert refusal, "no log line carries the request id"
    assert refusal[0]["principal"] == "nobody"
    assert refusal[0]["command_id"] == command.id
    assert any(e.get("node_id") == agent.node_id for e in server_log)
    assert any("fingerprint sha256:" in e["message"] for e in server_log)

    agent_log = json_lines(agent.log_path)
    finished = [e for e in agent_log if "finished" in e["message"]]
    assert finished and finished[0]["command_id"] == command.id
    assert all(e.get("node_id") == agent.node_id for e in agent_log)

    everything = fleet.server.log_path.read_text() + agent.log_path.read_text()
    for secret in (SECRET, fleet.server.token, token, METRICS_TOKEN):
        assert secret not in everything


def test_a_bad_metrics_address_is_one_sentence(fleet):
    agent = fleet.add_agent(start=False)
    agent.args = ["--metrics-address", "nowhere"]
    agent.start()
    assert agent.proc is not None
    assert agent.proc.wait(timeout=30) == 1
    text = agent.log_path.read_text()
    assert "--metrics-address 'nowhere' is not HOST:PORT" in text
    assert "Traceback" not in text
