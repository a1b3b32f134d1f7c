"""GET /metrics: who may scrape it, the families it exposes, and that they move when a
command runs (a node's session driven by the test over the real gateway)."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus, StatusDetail, StepStatus
from tests.harness import wait_for
from tests.inprocess import App

FAMILIES = {
    "fleetrun_http_requests",
    "fleetrun_http_request_duration_seconds",
    "fleetrun_commands",
    "fleetrun_invocations",
    "fleetrun_command_duration_seconds",
    "fleetrun_agents_connected",
    "fleetrun_frames_applied",
    "fleetrun_output_bytes",
    "fleetrun_outbox_lag_seconds",
    "fleetrun_deliveries",
    "fleetrun_delivery_failures",
    "fleetrun_db_transaction_seconds",
    "fleetrun_db_retries",
}


def scrape(
    app: App, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels)."""
    assert app.http is not None
    headers = {"authorization": f"Bearer {token or app.token}"}
    response = app.http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def families(app: App) -> set[str]:
    assert app.http is not None
    text = app.http.get("/metrics", headers={"authorization": f"Bearer {app.token}"}).text
    return {f.name for f in text_string_to_metric_families(text)}


def run_to_success(app: App, node, command_id: str, output: bytes) -> None:
    """Speak for the node: accept the invoke, send one step's output, succeed."""
    with app.connect(node) as session:
        invoke = session.next_invoke()
        assert invoke.command_id == command_id
        iid, now = invoke.invocation_id, time.time()
        frames = [
            protocol.Ack(invocation_id=iid, accepted=True),
            protocol.State(invocation_id=iid, seq=1, status=InvocationStatus.IN_PROGRESS),
            protocol.State(invocation_id=iid, seq=2, step=0, status=StepStatus.IN_PROGRESS),
            protocol.Output(
                invocation_id=iid, seq=3, step=0, stream="stdout", data=protocol.encode(output)
            ),
            protocol.State(
                invocation_id=iid, seq=4, step=0, status=StepStatus.SUCCESS, exit_code=0
            ),
            protocol.State(
                invocation_id=iid,
                seq=5,
                status=InvocationStatus.SUCCESS,
                detail=StatusDetail.SUCCESS,
                exit_code=0,
                started_at=now,
                ended_at=time.time(),
            ),
        ]
        for frame in frames:
            session.send(frame)
        assert app.client.wait(command_id, timeout_s=30).status == "Success"


def test_every_family_is_exposed(app):
    assert families(app) >= FAMILIES


def test_counters_move_when_a_command_runs(app):
    [node] = app.enrol()
    before = scrape(app)
    command = app.client.send_command(script="echo hello", node_ids=[node.node_id])
    run_to_success(app, node, command.id, b"hello metrics\n")
    after = scrape(app)

    assert value(after, "fleetrun_commands", status="Success") == 1
    assert value(after, "fleetrun_invocations", status="Success") == 1
    assert value(after, "fleetrun_commands", status="InProgress") == 0
    done = "fleetrun_command_duration_seconds_count"
    assert value(after, done, status="Success") == value(before, done, status="Success") + 1
    for kind, n in (("ack", 1), ("state", 4), ("output", 1)):
        name = "fleetrun_frames_applied_total"
        assert value(after, name, type=kind) - value(before, name, type=kind) == n, kind
    assert value(after, "fleetrun_output_bytes_total") - value(
        before, "fleetrun_output_bytes_total"
    ) == len(b"hello metrics\n")
    sent = (
        "fleetrun_http_requests_total",
        {"route": "/v1/commands", "method": "POST", "status": "201"},
    )
    assert value(after, sent[0], **sent[1]) == value(before, sent[0], **sent[1]) + 1
    # the route's template, not the raw path: one series whatever the command id
    polled = value(
        after,
        "fleetrun_http_requests_total",
        route="/v1/commands/{command_id}",
        method="GET",
        status="200",
    )
    assert polled >= 1
    assert not any(command.id in dict(labels).get("route", "") for _, labels in after)
    writes = "fleetrun_db_transaction_seconds_count"
    assert value(after, writes, kind="write") > value(before, writes, kind="write")


def test_agents_connected_counts_open_sessions_of_this_replica(app):
    [node] = app.enrol()
    replica = app.http.app.state.fleet.outbox.owner
    assert value(scrape(app), "fleetrun_agents_connected", replica=replica) == 0
    with app.connect(node):
        assert value(scrape(app), "fleetrun_agents_connected", replica=replica) == 1


def test_a_route_nobody_serves_is_one_series(app):
    for path in ("/nothing/here", "/nor/here"):
        assert app.http.get(path).status_code == 404
    samples = scrape(app)
    assert (
        value(
            samples, "fleetrun_http_requests_total", route="unmatched", method="GET", status="404"
        )
        == 2
    )


def test_without_a_token_metrics_are_refused(app):
    response = app.http.get("/metrics")
    assert response.status_code == 401
    assert "API token" in response.json()["error"]["message"]
    assert app.http.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 401


def test_a_token_that_is_not_an_administrators_is_refused(app):
    app.client.create_principal("reader")
    token = app.client.create_token("reader").token
    response = app.http.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert "may not read /metrics" in response.json()["error"]["message"]


@pytest.fixture
def scrape_app(tmp_path):
    a = App(tmp_path, metrics_token="scrape-secret-1", metrics_allow_cidrs="10.0.0.0/8").start()
    try:
        yield a
    finally:
        a.close()


def test_the_metrics_token_scrapes_and_only_it(scrape_app):
    """The in-process client comes from 127.0.0.1, outside the allowed 10.0.0.0/8."""
    http = scrape_app.http
    assert (
        http.get("/metrics", headers={"authorization": "Bearer scrape-secret-1"}).status_code == 200
    )
    assert (
        http.get("/metrics", headers={"authorization": "Bearer scrape-secret-2"}).status_code == 401
    )
    assert http.get("/metrics").status_code == 401


def test_an_allowed_address_scrapes_without_a_token(tmp_path):
    a = App(tmp_path, metrics_allow_cidrs="127.0.0.0/8").start()
    try:
        response = a.http.get("/metrics")
        assert response.status_code == 200
        assert "fleetrun_commands" in response.text
    finally:
        a.close()


def test_a_bad_scrape_network_is_named(tmp_path):
    from fleetrun.core.errors import ValidationError
    from fleetrun.server.settings import Settings

    with pytest.raises(ValidationError, match=r"metrics_allow_cidrs: '10\.0\.0\.300/8'"):
        Settings.load({}, env={"FLEETRUN_METRICS_ALLOW_CIDRS": "10.0.0.300/8"})


def test_two_apps_in_one_process_keep_their_own_counts(app, tmp_path):
    other = App(tmp_path / "other").start()
    try:
        for _ in range(3):
            app.http.get("/healthz")
        name = "fleetrun_http_requests_total"
        labels = {"route": "/healthz", "method": "GET", "status": "200"}
        assert value(scrape(app), name, **labels) == 3
        assert value(scrape(other), name, **labels) == 0
    finally:
        other.close()


@pytest.fixture
def slow_outbox(tmp_path):
    """An outbox that looks for due deliveries only when woken (or hourly)."""
    a = App(tmp_path, outbox_interval_s=3600.0).start()
    try:
        yield a
    finally:
        a.close()


def test_a_failing_webhook_counts_as_a_delivery_failure_and_its_retry_as_lag(slow_outbox):
    """Nothing listens on port 9: the attempt fails and is to be retried in a second or
    two. Once that time has passed and nobody sent it, the outbox is that far behind."""
    app = slow_outbox
    app.client.create_rule(
        "denials",
        pattern={"detail-type": ["API Call Denied"]},
        targets=[{"target": "webhook:http://127.0.0.1:9/hook", "secret": "s" * 32}],
    )
    app.client.create_principal("nosy")
    token = app.client.create_token("nosy").token
    assert (
        app.http.get("/v1/rules", headers={"authorization": f"Bearer {token}"}).status_code == 403
    )

    def failed() -> float:
        return value(scrape(app), "fleetrun_delivery_failures_total", kind="webhook")

    wait_for(failed, what="a failed webhook delivery counted")
    samples = scrape(app)
    assert value(samples, "fleetrun_deliveries_total", kind="webhook", outcome="retry") >= 1
    assert value(samples, "fleetrun_deliveries_total", kind="webhook", outcome="delivered") == 0
    # The retry is due a second or two after the failure, so the outbox is at most a few
    # seconds behind (under load the scrape may come after the retry fell due)...
    assert value(samples, "fleetrun_outbox_lag_seconds") < 5
    app.clock.advance(100)  # ...and 100 s on, without waking the outbox, that much more
    assert 90 <= value(scrape(app), "fleetrun_outbox_lag_seconds") <= 110
