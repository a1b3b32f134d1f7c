"""Database.write on PostgreSQL: a transaction aborted by a deadlock runs again, so the
caller sees its result, not an error."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import text

from fleetrun.server.db import Database
from tests import harness


@pytest.fixture
async def db(tmp_path):
    test_db = harness.TestDatabase(tmp_path)
    database = Database(test_db.url)
    if database.is_sqlite:
        await database.close()
        pytest.skip("SQLite runs one writer at a time: its transactions cannot deadlock")
    database.migrate()
    try:
        yield database
    finally:
        await database.close()
        test_db.drop()


async def test_two_writers_that_deadlock_both_commit(db):
    await db.write(
        lambda tx: tx.session.execute(text("CREATE TABLE pair (id int primary key, v int)"))
    )
    await db.write(lambda tx: tx.session.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)")))
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = {"a": 0, "b": 0}

    def crosswise(name, first, second):
        def work(tx):
            attempts[name] += 1
            tx.session.execute(text("UPDATE pair SET v = v + 1 WHERE id = :id"), {"id": first})
            if attempts[name] == 1:
                both_hold_one.wait()  # each holds one row and wants the other's
            tx.session.execute(text("UPDATE pair SET v = v + 1 WHERE id = :id"), {"id": second})
            return name

        return work

    done = await asyncio.gather(db.write(crosswise("a", 1, 2)), db.write(crosswise("b", 2, 1)))
    assert sorted(done) == ["a", "b"]
    assert sorted(attempts.values()) == [1, 2]  # PostgreSQL aborted one; it ran again
    retried = db.metrics.registry.get_sample_value(
        "fleetrun_db_retries_total", {"reason": "deadlock"}
    )
    assert retried == 1  # and GET /metrics says so
    rows = await db.read(lambda s: s.execute(text("SELECT v FROM pair ORDER BY id")).all())
    assert [r[0] for r in rows] == [2, 2]  # each transaction counted once
