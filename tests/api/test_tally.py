"""A command keeps a tally of its invocations by status as they move (engine.moves),
so that its counts and rate control do not recount every invocation on each frame.
The tally must always equal what counting the invocations gives; a transaction that
moves invocations without the command's refresh leaves it unknown, and the next
refresh counts again."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import protocol
from fleetrun.core.lifecycle import Happening
from fleetrun.core.statuses import InvocationStatus
from fleetrun.server.db import Tx
from fleetrun.server.engine import moves
from fleetrun.server.store.tables import Command, Invocation
from tests.harness import wait_for
from tests.inprocess import NodeSession


def _kept_and_counted(session: Session, command_id: str) -> tuple[dict[str, int] | None, Counter]:
    """The stored tally and the tally counted from the invocations, in one snapshot."""
    kept = session.execute(select(Command.tally).where(Command.id == command_id)).scalar_one()
    counted: Counter[str] = Counter()
    rows = session.execute(
        select(Invocation.status, Invocation.status_detail, Invocation.released_at).where(
            Invocation.command_id == command_id
        )
    )
    for status, detail, released_at in rows:
        counted[moves.tally_key(status, detail, unreleased=released_at is None)] += 1
    return kept, counted


def _answer(session: NodeSession, invoke: protocol.Invoke, exit_code: int) -> None:
    """As the agent does: accepted, started, ended with this exit code."""
    iid = invoke.invocation_id
    session.send(protocol.Ack(invocation_id=iid, accepted=True))
    session.send(protocol.State(invocation_id=iid, seq=1, status=InvocationStatus.IN_PROGRESS))
    session.finish(iid, 2, exit_code, time.time())


def test_the_kept_tally_follows_every_move_of_a_rate_controlled_command(app):
    db = app.http.app.state.fleet.db
    nodes = app.enrol(8)

    def check(command_id: str) -> None:
        kept, counted = app.http.portal.call(db.read, lambda s: _kept_and_counted(s, command_id))
        assert kept is not None
        assert kept == dict(counted)

    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(app.connect(node)) for node in nodes]
        command = app.client.send_command(
            script="true", node_ids=[n.node_id for n in nodes], max_concurrency="2", max_errors="1"
        )
        check(command.id)  # two released, six waiting
        # In the order they are answered: the second failure is past max-errors (1), so
        # the four still waiting then are Terminated; the one in flight still ends.
        codes = [0, 1, 1, 0]
        answered = 0
        while answered < len(codes):
            for node, session in zip(nodes, sessions, strict=True):
                if answered == len(codes):
                    break
                try:
                    invoke = session.next_invoke(timeout_s=0.1)
                except AssertionError:
                    continue  # nothing for this node yet
                _answer(session, invoke, codes[answered])
                answered += 1
                wait_for(
                    lambda n=node: (
                        app.client.get_invocation(command.id, n.node_id).status
                        in ("Success", "Failed")
                    ),
                    what="the answer to be stored",
                )
                check(command.id)
        done = app.client.wait(command.id, timeout_s=30)
    assert done.status == "Failed"
    assert done.counts == {"Success": 2, "Failed": 2, "Terminated": 4}
    assert (done.target_count, done.completed_count, done.error_count) == (8, 8, 2)
    check(command.id)


def test_a_move_the_refresh_did_not_apply_makes_the_next_refresh_count_again(app):
    db = app.http.app.state.fleet.db
    nodes = app.enrol(3)  # never connected: their invocations wait, Delayed
    command = app.client.send_command(script="true", node_ids=[n.node_id for n in nodes])
    wait_for(
        lambda: app.client.get_command(command.id).counts == {"Delayed": 3},
        what="the invocations to wait for their offline nodes",
    )

    def first(session: Session) -> Invocation:
        query = select(Invocation).where(Invocation.command_id == command.id)
        return session.execute(query.order_by(Invocation.seq).limit(1)).scalar_one()

    # A move committed with no refresh of its command (as a raw session could): the
    # command's tally is unknown from that commit on (or, if a pass of the server
    # refreshed the command meanwhile, counted again), never the one from before.
    with Session(db.engine) as other, other.begin():
        # The write lock first, as the server's writer takes it: a read transaction
        # that later writes fails at once if the server committed in between.
        other.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        assert moves.move(other, first(other), Happening.CANCEL)
    kept, counted = app.http.portal.call(db.read, lambda s: _kept_and_counted(s, command.id))
    assert kept is None or kept == dict(counted)
    assert counted[moves.tally_key("Cancelled", "Cancelled", unreleased=True)] == 1

    # A move inside a savepoint rolled back: what it noted is not trusted either.
    def undone(tx: Tx) -> None:
        with contextlib.suppress(RuntimeError), tx.session.begin_nested():
            invocations = tx.session.execute(
                select(Invocation).where(
                    Invocation.command_id == command.id, Invocation.status == "Delayed"
                )
            ).scalars()
            for inv in invocations:
                moves.move(tx.session, inv, Happening.CANCEL)
            raise RuntimeError("roll the savepoint back")
        app.http.app.state.fleet.refresh_commands(tx, [command.id])

    app.http.portal.call(db.write, undone)
    kept, counted = app.http.portal.call(db.read, lambda s: _kept_and_counted(s, command.id))
    assert kept == dict(counted)
    assert app.client.get_command(command.id).counts == {"Cancelled": 1, "Delayed": 2}

    app.client.cancel_command(command.id)
    kept, counted = app.http.portal.call(db.read, lambda s: _kept_and_counted(s, command.id))
    assert kept == dict(counted) == {moves.tally_key("Cancelled", "Cancelled", unreleased=True): 3}
    assert app.client.get_command(command.id).counts == {"Cancelled": 3}
