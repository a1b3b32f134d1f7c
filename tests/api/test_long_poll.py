"""GET /v1/commands/ID?wait_s=...: the long-poll answers on a change by default, and with
`until=done` only once the command is finished, so a waiter that wants the end is not
woken (and does not ask again) for every step on the way. The node's session is driven
by the test over the real gateway."""

from __future__ import annotations

import threading
import time

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus
from tests.harness import wait_for


def _poll(app, command_id: str, version: int, until: str | None, into: dict) -> None:
    params = {"wait_s": 20, "version": version, **({"until": until} if until else {})}
    started = time.monotonic()
    response = app.http.get(
        f"/v1/commands/{command_id}",
        params=params,
        headers={"authorization": f"Bearer {app.token}"},
    )
    into.update(response=response, took_s=time.monotonic() - started)


def _command_reads(app) -> float:
    """GET /v1/commands/{command_id} answered so far, as the server counts them."""
    registry = app.http.app.state.fleet.metrics.registry
    return (
        registry.get_sample_value(
            "fleetrun_http_requests_total",
            {"route": "/v1/commands/{command_id}", "method": "GET", "status": "200"},
        )
        or 0.0
    )


def test_until_done_answers_at_the_end_and_by_default_at_the_first_change(app):
    [node] = app.enrol()
    command = app.client.send_command(script="echo hi", node_ids=[node.node_id])
    with app.connect(node) as session:
        iid = session.next_invoke().invocation_id
        version = app.client.get_command(command.id).version
        on_change: dict = {}
        at_end: dict = {}
        pollers = [
            threading.Thread(target=_poll, args=(app, command.id, version, None, on_change)),
            threading.Thread(target=_poll, args=(app, command.id, version, "done", at_end)),
        ]
        for poller in pollers:
            poller.start()
        time.sleep(0.3)  # both are waiting before anything moves
        session.send(protocol.Ack(invocation_id=iid, accepted=True))
        session.send(protocol.State(invocation_id=iid, seq=1, status=InvocationStatus.IN_PROGRESS))
        pollers[0].join(10)
        assert on_change["response"].status_code == 200
        assert on_change["response"].json()["status"] == "InProgress"
        time.sleep(0.5)  # a step on the way: the `until=done` waiter is still waiting
        assert pollers[1].is_alive() and not at_end
        session.finish(iid, seq=2, exit_code=0, started_at=time.time())
        pollers[1].join(10)
    assert at_end["response"].status_code == 200, at_end["response"].text
    assert at_end["response"].json()["status"] == "Success"
    assert at_end["took_s"] < 15  # answered by the end, not by its 20 s bound


def test_until_done_on_a_finished_command_answers_at_once_and_a_bad_value_is_refused(app):
    [node] = app.enrol()
    command = app.client.send_command(script="echo hi", node_ids=[node.node_id])
    app.client.cancel_command(command.id)
    wait_for(lambda: app.client.get_command(command.id).done, what="the cancel")
    headers = {"authorization": f"Bearer {app.token}"}
    started = time.monotonic()
    done = app.http.get(
        f"/v1/commands/{command.id}", params={"wait_s": 20, "until": "done"}, headers=headers
    )
    assert done.status_code == 200 and done.json()["status"] == "Cancelled"
    assert time.monotonic() - started < 5
    bad = app.http.get(f"/v1/commands/{command.id}", params={"until": "soon"}, headers=headers)
    assert bad.status_code == 400 and "until" in bad.text


def test_the_sdk_wait_asks_once_for_the_end(app):
    """`Client.wait` without `on_update` waits with `until=done`: one long-poll, answered
    when the command ends, however many steps it takes on the way."""
    [node] = app.enrol()
    command = app.client.send_command(script="echo hi", node_ids=[node.node_id])
    result: dict = {}
    before = _command_reads(app)
    waiter = threading.Thread(
        target=lambda: result.update(done=app.client.wait(command.id, timeout_s=30))
    )
    with app.connect(node) as session:
        iid = session.next_invoke().invocation_id
        waiter.start()
        time.sleep(0.3)
        session.send(protocol.Ack(invocation_id=iid, accepted=True))
        session.send(protocol.State(invocation_id=iid, seq=1, status=InvocationStatus.IN_PROGRESS))
        time.sleep(0.5)
        assert waiter.is_alive()
        session.finish(iid, seq=2, exit_code=3, started_at=time.time())
        waiter.join(10)
    assert result["done"].status == "Failed"
    assert _command_reads(app) - before == 2  # the first read, then one long-poll
