"""Replicas' leases on a real database: a replica's start or sweep marks lost only the
nodes no live replica holds, each once; a replica whose lease lapsed takes back what it
still holds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from fleetrun.server.store import deliveries
from fleetrun.server.store import replicas as store
from fleetrun.server.store.tables import Node, Replica, utcnow

LEASE = 30.0


def _node(node_id: str, replica_id: str | None, status: str = "Online") -> dict[str, object]:
    return {
        "id": node_id,
        "name": node_id,
        "public_key": "k",
        "ping_status": status,
        "registered_at": utcnow(),
        "session_id": f"s-{node_id}" if status == "Online" else None,
        "replica_id": replica_id,
        "facts": {},
        "local_config": {},
    }


async def _statuses(db):
    rows = await db.read(lambda s: s.execute(select(Node.id, Node.ping_status)).all())
    return dict(rows)


async def _lost_events(db):
    events = await db.read(lambda s: [deliveries.event_of(e) for e in deliveries.read_events(s)])
    return sorted(e["detail"]["node-id"] for e in events if e["detail"]["ping-status"] != "Online")


async def test_a_start_marks_lost_only_the_nodes_of_replicas_whose_lease_ran_out(db):
    now = utcnow()
    await db.write(
        lambda tx: tx.session.execute(
            insert(Replica),
            [
                {"id": "a", "started_at": now, "lease_until": now + timedelta(seconds=20)},
                {"id": "dead", "started_at": now, "lease_until": now - timedelta(seconds=1)},
            ],
        )
    )
    nodes = [_node("n-a", "a"), _node("n-dead", "dead"), _node("n-none", None)]
    nodes.append(_node("n-off", "dead", status="ConnectionLost"))
    await db.write(lambda tx: tx.session.execute(insert(Node), nodes))

    await db.write(lambda tx: store.join(tx.session, "b", now, LEASE, alone=False))

    assert await _statuses(db) == {
        "n-a": "Online",  # replica a still holds it: untouched
        "n-dead": "ConnectionLost",
        "n-none": "ConnectionLost",
        "n-off": "ConnectionLost",
    }
    assert await _lost_events(db) == ["n-dead", "n-none"]
    # another replica sweeping the same moment finds nothing more to mark
    assert await db.write(lambda tx: store.sweep(tx.session, now)) == []
    assert await _lost_events(db) == ["n-dead", "n-none"]
    # once a's lease runs out, its node goes too, once
    later = now + timedelta(seconds=21)
    assert await db.write(lambda tx: store.sweep(tx.session, later)) == ["n-a"]
    assert await db.write(lambda tx: store.sweep(tx.session, later)) == []


async def test_a_replica_alone_on_its_database_ends_every_other(db):
    """SQLite: one process serves the database, so whoever held a node before is gone,
    however long its lease was to run."""
    now = utcnow()
    await db.write(
        lambda tx: tx.session.execute(
            insert(Replica), [{"id": "old", "started_at": now, "lease_until": now + timedelta(1)}]
        )
    )
    await db.write(lambda tx: tx.session.execute(insert(Node), [_node("n-1", "old")]))
    await db.write(lambda tx: store.join(tx.session, "new", now, LEASE, alone=True))
    assert await _statuses(db) == {"n-1": "ConnectionLost"}
    ids = await db.read(lambda s: list(s.scalars(select(Replica.id))))
    assert ids == ["new"]


async def test_a_replica_whose_lease_lapsed_takes_back_the_sessions_it_still_holds(db):
    from fleetrun.server.store import nodes as node_store

    now = utcnow()
    await db.write(lambda tx: store.join(tx.session, "a", now, LEASE, alone=False))
    await db.write(
        lambda tx: tx.session.execute(insert(Node), [_node("n-1", "a"), _node("n-2", "a")])
    )
    later = now + timedelta(seconds=LEASE + 1)  # a could not renew: b swept its nodes
    assert await db.write(lambda tx: store.sweep(tx.session, later)) == ["n-1", "n-2"]
    # meanwhile n-2 reconnected through b
    await db.write(
        lambda tx: node_store.set_many_online(
            tx.session, [node_store.Online("n-2", "s-new", "1", {}, {})], replica_id="b"
        )
    )
    assert await db.write(lambda tx: store.renew(tx.session, "a", later, LEASE)) is True
    held = {"n-1": "s-n-1", "n-2": "s-n-2"}
    back = await db.write(lambda tx: node_store.reclaim(tx.session, held, "a"))
    assert back == ["n-1"]  # n-2 is b's now
    rows = await db.read(
        lambda s: s.execute(select(Node.id, Node.session_id, Node.replica_id)).all()
    )
    assert sorted(rows) == [("n-1", "s-n-1", "a"), ("n-2", "s-new", "b")]
    # renewed in time, nothing lapsed
    assert await db.write(lambda tx: store.renew(tx.session, "a", later, LEASE)) is False


async def test_a_deleted_node_is_handed_once_to_the_replica_that_held_it(db):
    from sqlalchemy import update

    from fleetrun.server.store import nodes as node_store

    now = utcnow()
    await db.write(
        lambda tx: tx.session.execute(insert(Node), [_node("n-1", "a"), _node("n-2", "b")])
    )
    await db.write(
        lambda tx: tx.session.execute(
            update(Node).where(Node.id.in_(["n-1", "n-2"])).values(deleted_at=now)
        )
    )
    assert await db.write(lambda tx: node_store.deleted_but_held(tx.session, "a")) == ["n-1"]
    assert await db.write(lambda tx: node_store.deleted_but_held(tx.session, "a")) == []


async def test_the_live_replica_that_started_first_leads_and_the_next_when_its_lease_ends(db):
    now = utcnow()
    await db.write(
        lambda tx: tx.session.execute(
            insert(Replica),
            [
                {"id": "b", "started_at": now, "lease_until": now + timedelta(seconds=LEASE)},
                {
                    "id": "a",
                    "started_at": now - timedelta(minutes=5),
                    "lease_until": now + timedelta(seconds=10),
                },
                {
                    "id": "old",
                    "started_at": now - timedelta(hours=1),
                    "lease_until": now - timedelta(seconds=1),
                },
            ],
        )
    )
    assert await db.read(lambda s: store.leader(s, now)) == "a"  # "old" is over
    later = now + timedelta(seconds=11)  # a's lease ran out: b takes over
    assert await db.read(lambda s: store.leader(s, later)) == "b"
    assert await db.read(lambda s: store.leader(s, now + timedelta(hours=1))) is None
