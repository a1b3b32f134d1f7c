"""emit(): events are written with the transaction that caused them, and only then."""

from __future__ import annotations

import pytest

from fleetrun.server import events
from fleetrun.server.store import deliveries


async def test_an_event_is_written_when_its_transaction_commits(db):
    written = []
    remove = events.on_committed(lambda: written.append(True))
    try:
        event_id = await db.write(
            lambda tx: events.run_command_changed(
                tx.session, run_command="patch", execution_state="Running", node_id="n-1"
            )
        )
    finally:
        remove()
    (row,) = await db.read(lambda s: deliveries.read_events(s))
    assert row.id == event_id and written == [True]
    event = deliveries.event_of(row)
    assert event["detail-type"] == "Run Command State-change Notification"
    assert event["detail"]["execution-state"] == "Running"
    assert event["resources"] == ["frn:fleetrun:runcommand/n-1/patch", "frn:fleetrun:node/n-1"]
    assert event["source"] == "fleetrun" and event["time"].endswith("Z")


async def test_an_event_of_a_transaction_that_fails_is_never_written(db):
    def fails(tx):
        events.emit(tx.session, "Something", [], {"a": 1})
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await db.write(fails)
    await db.write(lambda tx: None)  # a later transaction of the same pool writes nothing
    assert await db.read(lambda s: deliveries.read_events(s)) == []


async def test_many_events_of_one_transaction_are_written_in_order(db):
    await db.write(lambda tx: [events.emit(tx.session, "Bulk", [], {"i": i}) for i in range(2500)])
    rows = await db.read(lambda s: deliveries.read_events(s, limit=5000, newest_first=False))
    assert [r.detail["i"] for r in rows] == list(range(2500))


async def test_a_savepoint_rolled_back_forgets_only_its_own_events(db):
    def work(tx):
        events.emit(tx.session, "Before", [], {})
        try:
            with tx.session.begin_nested():
                events.emit(tx.session, "Undone", [], {})
                raise RuntimeError("the savepoint's work failed")
        except RuntimeError:
            pass
        with tx.session.begin_nested():
            events.emit(tx.session, "Kept", [], {})
        events.emit(tx.session, "After", [], {})

    await db.write(work)
    rows = await db.read(lambda s: deliveries.read_events(s, newest_first=False))
    assert [r.detail_type for r in rows] == ["Before", "Kept", "After"]
