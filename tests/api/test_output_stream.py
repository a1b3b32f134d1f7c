"""The live output stream (`GET .../output/stream`, `iter_output(..., follow=True)`,
`fleetrun invocations tail`): output arrives while the invocation runs, each byte once
and in order, a stream resumes from a byte offset, ends when the invocation ends, and
is read only by whoever may read the invocation."""

from __future__ import annotations

import asyncio
import json
import queue
import threading

import pytest

from fleetrun.core import protocol
from fleetrun.core.errors import AccessDeniedError, ValidationError
from fleetrun.core.statuses import InvocationStatus
from fleetrun.sdk import AsyncClient
from tests.harness import wait_for


class Running:
    """An invocation the test speaks for: output frames one at a time, then the end."""

    def __init__(self, session, iid: str) -> None:
        self.session, self.iid, self.seq = session, iid, 1

    def write(self, data: bytes, stream: str = "stdout") -> None:
        self.seq += 1
        self.session.send(
            protocol.Output(
                invocation_id=self.iid,
                seq=self.seq,
                step=0,
                stream=stream,
                data=protocol.encode(data),
            )
        )

    def finish(self, code: int = 0) -> None:
        self.seq += 1
        self.session.finish(self.iid, self.seq, code, 0.0)


def follow_in_thread(client, command_id, node_id, **kw) -> queue.Queue:
    """Chunks of a followed stream as they arrive; None once it has ended."""
    got: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            for chunk in client.iter_output(command_id, node_id, follow=True, **kw):
                got.put(chunk)
        except Exception as exc:  # handed to the test
            got.put(exc)
        got.put(None)

    threading.Thread(target=run, daemon=True).start()
    return got


def take(got: queue.Queue) -> bytes:
    item = got.get(timeout=10)
    assert not isinstance(item, Exception), item
    return item


def test_output_is_streamed_while_the_invocation_runs_and_the_stream_ends_with_it(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        got = follow_in_thread(app.client, command.id, node.node_id)
        for n in range(5):
            line = b"line %d\n" % n
            inv.write(line)
            assert take(got) == line  # seen before the next is even written
        inv.write(b"to stderr\n", stream="stderr")
        inv.finish()
        assert got.get(timeout=10) is None  # ended, with nothing more on stdout
        errors = b"".join(app.client.iter_output(command.id, node.node_id, "stderr", follow=True))
        assert errors == b"to stderr\n"


def test_a_stream_resumes_from_an_offset_or_the_last_event_id(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        inv.write(b"0123456789")
        inv.write(b"abcdef\n")
        inv.finish()
        app.client.wait(command.id, timeout_s=30)
    whole = app.client.get_output(command.id, node.node_id)
    assert whole == b"0123456789abcdef\n"
    tail = b"".join(app.client.iter_output(command.id, node.node_id, follow=True, start=4))
    assert tail == whole[4:]
    path = f"/v1/commands/{command.id}/invocations/{node.node_id}/output/stream"
    answer = app.http.get(
        path, headers={"authorization": f"Bearer {app.token}", "last-event-id": "12"}
    )
    events = [e for e in answer.text.split("\n\n") if e.startswith("id:")]
    assert events[0].startswith("id: 17\nevent: output")
    first = json.loads(events[0].split("data: ", 1)[1])
    assert first["offset"] == 12
    assert events[-1].startswith("id: 17\nevent: end") and '"status": "Success"' in events[-1]
    bad = app.http.get(
        path, headers={"authorization": f"Bearer {app.token}", "last-event-id": "x1"}
    )
    assert bad.status_code == 400 and "is not a byte offset" in bad.json()["error"]["message"]


def test_an_offset_past_what_is_stored_is_refused_with_a_sentence(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with pytest.raises(ValidationError, match="past the 0 bytes"):
        list(app.client.iter_output(command.id, node.node_id, follow=True, start=5))
    with pytest.raises(ValidationError, match="leave out step and end"):
        app.client.iter_output(command.id, node.node_id, follow=True, step=0)


def test_only_a_caller_who_may_read_the_invocation_may_follow_it(app):
    (node,) = app.enrol(1, tags={"role": "db"})
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    app.client.create_principal("webonly")
    app.client.create_policy(
        "webonly-read",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["fleetrun:GetCommandInvocation"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
                }
            ],
        },
    )
    app.client.attach("webonly", policy="webonly-read")
    reader = app.client_for(app.client.create_token("webonly").token)
    with pytest.raises(AccessDeniedError):
        list(reader.iter_output(command.id, node.node_id, follow=True))


def test_the_async_client_follows_the_same_stream(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        inv.write(b"one\n")
        inv.write(b"two\n")
        inv.finish()

        async def read() -> bytes:
            async with AsyncClient(app.url, app.token, http=app.async_http()) as client:
                return b"".join(
                    [c async for c in client.iter_output(command.id, node.node_id, follow=True)]
                )

        assert asyncio.run(read()) == b"one\ntwo\n"


def test_tail_prints_each_nodes_lines_prefixed_plain_when_piped_and_json_on_request(app):
    a, b = app.enrol(2)
    command = app.client.send_command(script="true", node_ids=[a.node_id, b.node_id])
    for node, text in ((a, b"alpha 1\nalpha 2"), (b, b"beta 1\n")):
        with app.connect(node) as session:
            inv = Running(session, session.start(command.id))
            inv.write(text)
            inv.write(b"oops\n", stream="stderr")
            inv.finish()
    app.client.wait(command.id, timeout_s=30)
    done = app.cli("invocations", "tail", command.id, "--follow")
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"{a.name} | alpha 1" in lines and f"{a.name} | alpha 2" in lines
    assert f"{b.name} | beta 1" in lines and f"{b.name} ! oops" in lines
    assert "\x1b[" not in done.stdout  # no colour when not on a terminal
    one = app.cli("invocations", "tail", command.id, b.node_id, "--stream", "stdout", "--json")
    records = [json.loads(line) for line in one.stdout.splitlines()]
    assert records == [
        {
            "command_id": command.id,
            "node_id": b.node_id,
            "node_name": b.name,
            "stream": "stdout",
            "line": "beta 1",
        }
    ]


def test_send_wait_follow_prints_lines_prefixed_then_the_summary_not_the_output_again(app):
    (node,) = app.enrol(1)
    result: dict = {}
    sent = threading.Thread(
        target=lambda: result.update(
            done=app.cli("send", "--node", node.node_id, "--script", "x", "--wait", "--follow")
        )
    )
    sent.start()
    with app.connect(node) as session:
        inv = Running(session, session.start())
        inv.write(b"first\nsecond\n")
        inv.write(b"bad\n", stream="stderr")
        inv.finish(3)
        sent.join(30)
    done = result["done"]
    assert done.exit_code != 0  # the node failed: the exit code says so, as with --wait
    lines = done.stdout.splitlines()
    assert f"{node.name} | first" in lines and f"{node.name} ! bad" in lines
    assert lines.index(f"{node.name} | first") < lines.index(f"{node.name} | second")
    assert done.stdout.count("second") == 1  # printed as it came, not again at the end


def test_follow_goes_with_wait_and_not_with_json(app):
    (node,) = app.enrol(1)
    alone = app.cli("send", "--node", node.node_id, "--script", "x", "--follow")
    assert alone.exit_code != 0 and "go with --wait" in alone.stderr
    as_json = app.cli("send", "--node", node.node_id, "--script", "x", "--wait", "-f", "--json")
    assert as_json.exit_code != 0 and "leave out --json" in as_json.stderr
    assert app.client.list_commands() == []  # refused before anything was sent


def test_output_another_replica_stores_reaches_the_stream_without_a_wake_up(app):
    """What another replica's gateway stores is in the database and the output store
    only, no wake-up reaches this server: the stream still delivers it (it looks again
    every POLL_S)."""
    from fleetrun.server.engine.invocations import FrameApplier

    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    state = app.http.app.state.fleet
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        inv.write(b"through this server\n")
        got = follow_in_thread(app.client, command.id, node.node_id)
        assert take(got) == b"through this server\n"
        inv.seq += 1
        frame = protocol.Output(
            invocation_id=inv.iid,
            seq=inv.seq,
            step=0,
            stream="stdout",
            data=protocol.encode(b"through another\n"),
        )

        def elsewhere(tx) -> None:
            FrameApplier(tx.session, node.node_id, state.output).numbered(frame)

        app.http.portal.call(state.db.write, elsewhere)
        assert take(got) == b"through another\n"
        inv.finish()
        assert got.get(timeout=10) is None


def test_a_chunk_the_output_store_cannot_write_is_not_acknowledged_and_comes_again(app):
    """A chunk is stored in the transaction that records its length: one the store
    cannot write is not recorded, not acknowledged, and stored when the agent sends it
    again."""
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    state = app.http.app.state.fleet
    blocker = state.output.root / command.id  # where the invocation's directory goes
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        blocker.write_bytes(b"")  # a file: the stream's directory cannot be made
        inv.write(b"lost?\n")  # seq 2
        with pytest.raises(AssertionError, match="the session closed"):
            _frames_until_closed(session)  # the server closes it rather than acknowledge
    assert app.client.get_output(command.id, node.node_id) == b""
    blocker.unlink()
    with app.connect(node, running=[inv.iid]) as session:
        # Every numbered frame not acknowledged is sent again on a new session, as the
        # agent does (its InProgress may have failed with the chunk, in one batch).
        session.send(
            protocol.State(invocation_id=inv.iid, seq=1, status=InvocationStatus.IN_PROGRESS)
        )
        inv.session, inv.seq = session, 1
        inv.write(b"lost?\n")  # seq 2 again
        inv.finish()
        wait_for(
            lambda: app.client.get_command(command.id).status == "Success",
            what="the command to end",
        )
    assert app.client.get_output(command.id, node.node_id) == b"lost?\n"


def _frames_until_closed(session) -> None:
    while True:
        frame = session.next(timeout_s=30)
        assert not (isinstance(frame, protocol.Received) and frame.seq >= 2), frame
