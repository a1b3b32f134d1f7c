"""A read sees the database at one moment, on both databases."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select

from fleetrun.server.store.tables import Principal, utcnow


async def test_a_read_sees_one_moment_while_a_write_commits_beside_it(db):
    """Two reads in one read transaction agree even when a write commits between them:
    a page never shows half of a change (a run Running beside its provisioning state of
    before)."""
    await db.write(
        lambda tx: tx.session.add(
            Principal(name="p", kind="user", description="before", created_at=utcnow())
        )
    )
    first_read, written = threading.Event(), threading.Event()

    def read(session):
        query = select(Principal.description).where(Principal.name == "p")
        one = session.scalar(query)
        first_read.set()
        assert written.wait(10)
        return one, session.scalar(query)

    def change(tx):
        tx.session.get(Principal, "p").description = "after"

    async def write():
        assert await asyncio.to_thread(first_read.wait, 10)
        await db.write(change)
        written.set()

    seen, _ = await asyncio.gather(db.read(read), write())
    assert seen == ("before", "before")
    assert await db.read(lambda s: s.get(Principal, "p").description) == "after"
