"""Agent sessions ending: the nodes are marked ConnectionLost, with their events,
whether they drop one by one, together, or because the server shuts down."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from starlette.websockets import WebSocketDisconnect

from fleetrun.core import protocol
from fleetrun.server.store import nodes as node_store
from tests.harness import wait_for


def _statuses(app, nodes):
    return {n.node_id: app.client.get_node(n.node_id).ping_status for n in nodes}


def _lost_events(app):
    return [
        e.detail["node-id"]
        for e in app.client.list_events(detail_type="Node Status-change Notification", limit=1000)
        if e.detail.get("ping-status") == "ConnectionLost"
    ]


def test_sessions_that_end_together_are_each_marked_lost_once(app):
    nodes = app.enrol(5)
    with contextlib.ExitStack() as stack:
        for node in nodes:
            stack.enter_context(app.connect(node))
        assert set(_statuses(app, nodes).values()) == {"Online"}
    wait_for(
        lambda: set(_statuses(app, nodes).values()) == {"ConnectionLost"},
        what="every node to be marked lost",
    )
    assert sorted(_lost_events(app)) == sorted(n.node_id for n in nodes)


def test_a_node_whose_newer_session_took_over_is_not_marked_lost_by_the_old_one(app):
    """The mark names the session that ended: a node that reconnected meanwhile (its
    row holds the newer session) stays Online."""
    [node] = app.enrol(1)
    db = app.http.app.state.fleet.db
    with app.connect(node) as session:
        assert session.welcome is not None
        current = session.welcome.session_id

        def mark(tx):
            return node_store.set_connections_lost(tx.session, {node.node_id: "0123456789abcdef"})

        assert app.http.portal.call(db.write, mark) == []
        assert _statuses(app, [node]) == {node.node_id: "Online"}

        def mark_current(tx):
            return node_store.set_connections_lost(tx.session, {node.node_id: current})

        assert app.http.portal.call(db.write, mark_current) == [node.node_id]
        assert _statuses(app, [node]) == {node.node_id: "ConnectionLost"}
    assert _lost_events(app) == [node.node_id]


def test_a_shutdown_marks_every_node_it_held_lost(app):
    """What the server's shutdown does with the sessions it holds (its lifespan calls
    the gateway's stop): closes them and marks their nodes lost, in one transaction."""
    nodes = app.enrol(3)
    gateway = app.http.app.state.fleet.gateway
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(app.connect(node)) for node in nodes]
        assert set(_statuses(app, nodes).values()) == {"Online"}
        app.http.portal.call(gateway.stop)
        for session in sessions:  # each was told why
            closed = session.frames.get(timeout=10)
            assert isinstance(closed, WebSocketDisconnect), closed
            assert closed.code == protocol.CLOSE_SHUTDOWN
    assert set(_statuses(app, nodes).values()) == {"ConnectionLost"}


def test_nothing_reaches_an_agent_before_its_welcome(app):
    """The session is registered before the handshake's write (marking the node online)
    is done; a dispatcher pass in between used to send an `invoke` first, which a real
    agent takes for a failed handshake. Here the write is held back (SQLite has one
    writer) while a pass runs: the welcome still comes first, then the invoke."""
    [node] = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    db = app.http.app.state.fleet.db
    held = threading.Event()

    def hold(tx):
        held.set()
        time.sleep(1.5)

    blocker = threading.Thread(target=app.http.portal.call, args=(db.write, hold))
    blocker.start()
    held.wait(10)
    waker = threading.Timer(0.5, app.advance, args=(0,))
    waker.start()
    try:
        with app.connect(node) as session:  # fails unless the first frame is the welcome
            assert session.next_invoke().command_id == command.id
    finally:
        waker.join()
        blocker.join()


def test_an_answered_invoke_is_not_sent_again_while_its_answer_waits_to_be_stored(app):
    """Under a burst the agents' acks can wait in the gateway's inbox longer than the
    resend interval; an invoke already answered used to be sent again then (thousands
    of duplicates at 5,000 nodes). Here the ack's write is held back (SQLite's one
    writer) while the resend interval passes: no second invoke."""
    if app.db.kind != "sqlite":
        pytest.skip("holds SQLite's single writer; PostgreSQL stores the ack beside it")
    [node] = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    db = app.http.app.state.fleet.db
    held, release = threading.Event(), threading.Event()

    def hold(tx):
        held.set()
        release.wait(20)

    with app.connect(node) as session:
        invoke = session.next_invoke()
        blocker = threading.Thread(target=app.http.portal.call, args=(db.write, hold))
        blocker.start()
        try:
            assert held.wait(10)
            session.send(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True))
            time.sleep(0.3)  # in the inbox; its write waits behind the held one
            app.advance(app.settings.invoke_resend_s + 1)  # a full pass; a resend is due
            with pytest.raises(AssertionError, match="no frame"):
                session.next_invoke(timeout_s=2)
        finally:
            release.set()
            blocker.join()
        wait_for(
            lambda: app.client.get_invocation(command.id, node.node_id).status == "InProgress",
            what="the ack to be stored",
        )
