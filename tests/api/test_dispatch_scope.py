"""What a replica's full delivery pass reads: the invocations of the nodes it holds
and of the nodes no replica holds (to mark them Delayed), never those of a node another
replica holds, which that replica delivers."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Node


def test_a_full_pass_reads_only_what_this_replica_may_act_on(app):
    mine, theirs, away, unheld = app.enrol(4)
    command = app.client.send_command(
        script="true", node_ids=[n.node_id for n in (mine, theirs, away, unheld)]
    )
    state = app.http.app.state.fleet
    held = {mine.node_id: state.replica_id, theirs.node_id: "another-replica"}
    with Session(state.db.engine) as session, session.begin():
        for node_id, replica_id in held.items():
            session.execute(
                update(Node)
                .where(Node.id == node_id)
                .values(ping_status="Online", replica_id=replica_id, session_id="s")
            )
        session.execute(  # Online with no replica named: taken as anyone's
            update(Node).where(Node.id == unheld.node_id).values(ping_status="Online")
        )
    with Session(state.db.engine) as session:
        everyone = invocation_store.deliverable(session)
        here = invocation_store.deliverable(session, replica_id=state.replica_id)
    assert {r[1] for r in everyone} == {mine.node_id, theirs.node_id, away.node_id,
                                        unheld.node_id}  # fmt: skip
    assert {r[1] for r in here} == {mine.node_id, away.node_id, unheld.node_id}
    assert {r[2] for r in here} == {command.id}
