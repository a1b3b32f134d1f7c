"""Two transactions that move the same invocation: the later one must see the earlier
one's move, never overwrite it with a status decided on what it read before."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core.lifecycle import Happening
from fleetrun.server.db import Tx
from fleetrun.server.engine import moves
from fleetrun.server.store.tables import Invocation
from tests.harness import wait_for


def _invocation(session: Session, command_id: str) -> Invocation:
    return session.execute(
        select(Invocation).where(Invocation.command_id == command_id)
    ).scalar_one()


# the raw second session's connection is reclaimed by the collector in a later test
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_move_decided_on_a_stale_read_runs_again_and_keeps_the_cancel(app):
    """The shape of a lost cancel seen on PostgreSQL: the dispatcher read a waiting
    invocation, an operator cancelled it, then the dispatcher's move (decided on
    its read) overwrote Cancelled, and the agent ran what had been cancelled."""
    db = app.http.app.state.fleet.db
    if db.is_sqlite:
        pytest.skip("SQLite's writer holds the write lock from BEGIN: no write comes between")
    [node] = app.enrol()
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    # Settled first: the dispatcher marks the offline node's invocation Delayed, and a
    # move of its own between the two below would make the cancel, not the accept, run
    # on a stale read (PostgreSQL runs writers side by side).
    wait_for(
        lambda: app.client.get_invocation(command.id, node.node_id).status == "Delayed",
        what="the invocation to wait for its offline node",
    )
    seen: list[str] = []

    def accept(tx: Tx) -> str | None:
        inv = _invocation(tx.session, command.id)
        seen.append(inv.status)
        if len(seen) == 1:  # between this read and this write, a cancel commits
            with Session(db.engine) as other, other.begin():
                assert moves.move(other, _invocation(other, command.id), Happening.CANCEL)
        moved = moves.move(tx.session, inv, Happening.ACCEPTED)
        return moved.status.value if moved else None

    assert app.http.portal.call(db.write, accept) is None  # the second run saw the cancel
    assert seen[0] == "Delayed"
    assert seen[1:] == ["Cancelled"]
    assert app.client.get_invocation(command.id, node.node_id).status == "Cancelled"
    retries = db.metrics.registry.get_sample_value(
        "fleetrun_db_retries_total", {"reason": "stale_row"}
    )
    assert retries >= 1  # GET /metrics counts the run again (the dispatcher's may add one)
