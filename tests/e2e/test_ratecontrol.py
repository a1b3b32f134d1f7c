"""Rate control: max-concurrency and max-errors, as numbers and percentages."""

from __future__ import annotations

import httpx
import pytest


def _max_overlap(invocations) -> int:
    events = []
    for inv in invocations:
        events += [(inv.started_at, 1), (inv.ended_at, -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    from tests.harness import Fleet

    f = Fleet(tmp_path_factory.mktemp("six")).start()
    try:
        f.add_agents(6, tags={"pool": "six"})
        yield f
    finally:
        f.close()


def test_max_concurrency_bounds_how_many_run_at_once(six):
    client = six.client
    command = client.send_command(script="sleep 1", tags={"pool": "six"}, max_concurrency=2)
    assert (command.max_concurrency, command.concurrency_limit) == ("2", 2)
    assert client.wait(command.id, timeout_s=120).status == "Success"
    runs = client.list_invocations(command.id)
    assert len(runs) == 6 and _max_overlap(runs) == 2


def test_past_max_errors_nothing_new_starts_and_the_rest_is_terminated(six):
    client = six.client
    command = client.send_command(
        script="exit 1", tags={"pool": "six"}, max_concurrency=1, max_errors=1
    )
    done = client.wait(command.id, timeout_s=120)
    assert (done.status, done.status_detail, done.error_count, done.completed_count) == (
        "Failed",
        "Failed",
        2,
        6,
    )
    runs = client.list_invocations(command.id)
    assert sorted(i.status for i in runs) == [
        "Failed",
        "Failed",
        "Terminated",
        "Terminated",
        "Terminated",
        "Terminated",
    ]
    terminated = [i for i in runs if i.status == "Terminated"]
    assert all(
        i.status_detail == "ErrorThresholdExceeded" and i.started_at is None for i in terminated
    )


def test_under_max_errors_the_command_is_incomplete(six):
    client = six.client
    node = six.agents[0].node_id
    script = f'test "$FLEETRUN_NODE_ID" != {node}'
    done = client.wait(
        client.send_command(script=script, tags={"pool": "six"}, max_errors="20%").id, timeout_s=120
    )
    assert done.error_threshold == 1  # 20% of 6, rounded down
    assert (done.status, done.status_detail, done.error_count) == ("Failed", "Incomplete", 1)


def test_percentages_round_as_documented(six):
    command = six.client.send_command(
        script="true", tags={"pool": "six"}, max_concurrency="50%", max_errors="10%"
    )
    assert (command.concurrency_limit, command.error_threshold) == (3, 0)
    six.client.wait(command.id, timeout_s=120)


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("max_concurrency", "12x", "Max concurrency '12x' is malformed"),
        ("max_concurrency", "0", "Max concurrency '0' is malformed"),
        ("max_errors", "101%", "Max errors '101%' is malformed"),
    ],
)
def test_malformed_rates_are_refused_and_nothing_is_sent(six, field, value, phrase):
    before = len(six.client.list_commands(limit=1000))
    response = httpx.post(
        f"{six.server.url}/v1/commands",
        headers={"authorization": f"Bearer {six.server.token}"},
        json={"parameters": {"commands": ["true"]}, "targets": [{"key": "all"}], field: value},
    )
    assert response.status_code == 400 and phrase in response.json()["error"]["message"]
    assert len(six.client.list_commands(limit=1000)) == before
