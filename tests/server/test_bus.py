"""The bus between replicas: payloads under PostgreSQL's limit, and, on a real
PostgreSQL, a message published in a transaction reaches the other replica's handler
when it commits, never when it rolls back, and never the replica that sent it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy import update

from fleetrun.server.bus import MAX_PAYLOAD, Bus, decode, encode
from fleetrun.server.db import Database
from fleetrun.server.identities import IdentityCache
from fleetrun.server.store.tables import Principal, utcnow
from tests.harness import PG_ENV


def test_a_payload_says_all_for_the_kinds_with_too_many_keys_to_fit():
    ids = {f"{n:08d}-0000-0000-0000-000000000000" for n in range(1000)}
    payload = encode("r1", {"changed": ids, "dispatch": set(), "cancel": {"n i"}})
    assert len(payload.encode()) <= MAX_PAYLOAD
    sender, messages = decode(payload)
    assert sender == "r1"
    assert messages == {"changed": None, "dispatch": [], "cancel": ["n i"]}


def test_a_payload_that_fits_keeps_every_key():
    sender, messages = decode(encode("r2", {"deleted": {"b", "a"}}))
    assert (sender, messages) == ("r2", {"deleted": ["a", "b"]})


def test_a_message_that_is_not_ours_is_ignored(db, caplog):
    bus = Bus(db, "me")
    heard: list[object] = []
    bus.on("dispatch", heard.append)
    bus.received("not json")
    bus.received('{"r": "other", "m": {"dispatch": [], "unknown-kind": ["x"]}}')
    bus.received('{"r": "me", "m": {"dispatch": ["mine"]}}')
    assert heard == [[]]
    assert "was not ours" in caplog.text


@contextlib.asynccontextmanager
async def _two_replicas(db: Database) -> AsyncIterator[tuple[Bus, Bus]]:
    """The buses of two replicas on one database (a on `db`, b on a pool of its own),
    not yet listening: handlers go on first."""
    other = Database(db.url)
    try:
        yield Bus(db, "replica-a"), Bus(other, "replica-b")
    finally:
        await other.close()


@contextlib.asynccontextmanager
async def _listening(*buses: Bus) -> AsyncIterator[None]:
    for bus in buses:
        bus.start()
    try:
        async with asyncio.timeout(10):
            for bus in buses:
                await bus.connected.wait()
        yield
    finally:
        for bus in buses:
            await bus.stop()


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_what_a_replica_commits_reaches_the_others_and_what_it_rolls_back_does_not(db):
    async with _two_replicas(db) as (a, b):
        heard_a: list[list[str] | None] = []
        heard_b: asyncio.Queue[list[str] | None] = asyncio.Queue()
        connects: list[bool] = []
        a.on("changed", heard_a.append)
        b.on("changed", heard_b.put_nowait)
        b.on_connect(lambda: connects.append(True))
        async with _listening(a, b):
            assert connects == [True]

            await db.write(lambda tx: tx.publish("changed", "c1", "c2"))
            async with asyncio.timeout(5):
                assert await heard_b.get() == ["c1", "c2"]

            def rolled_back(tx):
                tx.publish("changed", "never")
                raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError):
                await db.write(rolled_back)
            await db.write(lambda tx: tx.publish("changed", "c3"))  # the next to arrive
            async with asyncio.timeout(5):
                assert await heard_b.get() == ["c3"]
            await asyncio.sleep(0.2)
            assert heard_a == []  # a replica does not hear itself


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_a_change_of_access_on_one_replica_clears_who_tokens_are_on_the_others(db):
    IdentityCache(time.monotonic).watch(db.sessionmaker)  # what marks access changed
    async with _two_replicas(db) as (a, b):
        cleared: asyncio.Queue[list[str] | None] = asyncio.Queue()
        b.on("access", cleared.put_nowait)
        async with _listening(a, b):
            await db.write(
                lambda tx: tx.session.add(Principal(name="p", kind="user", created_at=utcnow()))
            )
            async with asyncio.timeout(5):
                assert await cleared.get() == []
            await db.write(  # a bulk statement on a table of access
                lambda tx: tx.session.execute(
                    update(Principal).where(Principal.name == "p").values(description="d")
                )
            )
            async with asyncio.timeout(5):
                assert await cleared.get() == []


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_a_replica_that_lost_its_listening_connection_listens_again_and_says_so(db):
    bus = Bus(db, "replica-a")
    connects: list[bool] = []
    bus.on_connect(lambda: connects.append(True))
    bus.start()
    try:
        async with asyncio.timeout(10):
            await bus.connected.wait()
        with psycopg.connect(db.url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
        async with asyncio.timeout(15):
            while len(connects) < 2:
                await asyncio.sleep(0.05)
        assert bus.connected.is_set()
    finally:
        await bus.stop()
