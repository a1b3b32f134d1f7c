"""Replicas and their leases (design §8, ownership): a replica names itself on the
node rows whose sessions it holds and renews one lease row for all of them; when the
lease runs out, any replica marks those nodes ConnectionLost, once. A replica's start
touches no other replica's nodes."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.orm import Session

from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Replica

FORGET_AFTER = timedelta(hours=1)  # a lease that long over: its row goes


def live(now: datetime) -> Select[str]:
    """The ids of the replicas whose lease runs at `now`."""
    return select(Replica.id).where(Replica.lease_until > now)


def join(session: Session, replica_id: str, now: datetime, lease_s: float, *, alone: bool) -> None:
    """This replica starts: its lease row, and then the sweep. `alone` (SQLite: one
    process serves the database): every other replica is over, whatever its lease.
    (`leader` then says whether it leads.)"""
    if alone:
        session.execute(delete(Replica).where(Replica.id != replica_id))
    session.execute(
        insert(Replica).values(
            id=replica_id, started_at=now, lease_until=now + timedelta(seconds=lease_s)
        )
    )
    sweep(session, now)


def renew(session: Session, replica_id: str, now: datetime, lease_s: float) -> bool:
    """Extend this replica's lease; whether it had run out (another replica may have
    marked its nodes lost: the caller reclaims the sessions it still holds)."""
    until = now + timedelta(seconds=lease_s)
    row = session.execute(
        select(Replica.lease_until).where(Replica.id == replica_id).with_for_update()
    ).first()
    if row is None:  # swept away long ago
        session.execute(insert(Replica).values(id=replica_id, started_at=now, lease_until=until))
        return True
    session.execute(update(Replica).where(Replica.id == replica_id).values(lease_until=until))
    return bool(row[0] <= now)


def leave(session: Session, replica_id: str) -> None:
    """This replica stops (its sessions were marked lost as they closed)."""
    session.execute(delete(Replica).where(Replica.id == replica_id))


def sweep(session: Session, now: datetime) -> list[str]:
    """Mark lost the nodes no live replica holds; the ids marked. Rows of leases long
    over go."""
    marked = node_store.set_lost_where_unheld(session, live(now))
    session.execute(delete(Replica).where(Replica.lease_until < now - FORGET_AFTER))
    return marked


def leader(session: Session, now: datetime) -> str | None:
    """The replica that does the work done once for all replicas (output destinations):
    the live one that started first. When it dies, the next takes over as its lease
    runs out."""
    return session.scalar(
        select(Replica.id)
        .where(Replica.lease_until > now)
        .order_by(Replica.started_at, Replica.id)
        .limit(1)
    )
