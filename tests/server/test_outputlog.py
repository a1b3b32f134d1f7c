"""The output log's cursors on a real database: one replica at a time holds a reader's
cursor; a replica whose lease ran out cannot move it any more (its batch is counted or
sent by the one that took over); pruning keeps what any reader still needs, and chunk
numbers are never used again."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from fleetrun.server import outputlog
from fleetrun.server.store.tables import OutputChunk
from tests.harness import PG_ENV

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _chunks(session, count):
    for n in range(count):
        session.add(
            OutputChunk(
                at=T0,
                invocation_id="i",
                command_id="c",
                node_id="n",
                step=0,
                stream="stdout",
                offset=n,
                length=1,
            )
        )


async def test_one_replica_at_a_time_moves_a_cursor(db):
    await db.write(lambda tx: outputlog.ensure_cursor(tx.session, "alarms", T0))
    await db.write(lambda tx: _chunks(tx.session, 3))
    claim = lambda owner, at: db.write(  # noqa: E731
        lambda tx: outputlog.claim(tx.session, "alarms", owner, at, 15.0)
    )
    assert await claim("a", T0) == 0
    assert await claim("b", T0 + timedelta(seconds=5)) is None  # a holds it
    assert await claim("a", T0 + timedelta(seconds=10)) == 0  # a renews
    later = T0 + timedelta(seconds=30)
    assert await claim("b", later) == 0  # a's lease ran out
    moved = await db.write(lambda tx: outputlog.advance(tx.session, "alarms", "a", 3, 3, later))
    assert moved is False  # a's late batch does not count
    assert await db.write(lambda tx: outputlog.advance(tx.session, "alarms", "b", 3, 3, later))
    assert await claim("b", later) == 3


async def test_pruning_keeps_what_a_reader_needs_and_numbers_are_not_reused(db):
    for name in ("alarms", "forward:syslog"):
        await db.write(lambda tx, name=name: outputlog.ensure_cursor(tx.session, name, T0))
    await db.write(lambda tx: _chunks(tx.session, 4))
    await db.write(lambda tx: outputlog.claim(tx.session, "alarms", "a", T0, 15.0))
    await db.write(lambda tx: outputlog.advance(tx.session, "alarms", "a", 4, 4, T0))
    readers = ["alarms", "forward:syslog"]
    assert await db.write(lambda tx: outputlog.prune(tx.session, readers)) == 0  # syslog lags
    assert await db.write(lambda tx: outputlog.prune(tx.session, ["alarms"])) == 3
    await db.write(lambda tx: outputlog.prune(tx.session, []))  # the newest always stays
    await db.write(lambda tx: _chunks(tx.session, 1))
    chunks = await db.read(lambda s: outputlog.read_chunks(s, 4))
    assert [c.seq for c in chunks] == [5]  # not 1 again: a cursor at 4 would skip it


async def test_a_missing_number_is_passed_at_once(db):
    """Numbers are taken in commit order, so a missing one was rolled back: reading
    goes on past it, without waiting."""
    await db.write(lambda tx: _chunks(tx.session, 4))
    await db.write(lambda tx: tx.session.query(OutputChunk).filter_by(seq=2).delete())
    chunks = await db.read(lambda s: outputlog.read_chunks(s, 0))
    assert [c.seq for c in chunks] == [1, 3, 4]


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="PostgreSQL commits in any order")
async def test_chunks_are_numbered_in_the_order_their_transactions_commit(db):
    """Two replicas note output at once: the second's chunk waits for the first's
    transaction to end, so no reader sees number 7 while 6 may still commit (a cursor
    moved past 7 would skip 6 for ever; it was lost when a storing transaction took
    longer than a reader's patience)."""
    from fleetrun.core.clock import SystemClock
    from fleetrun.server.engine.invocations import StoredOutput

    log = outputlog.OutputLog(SystemClock(), replica_id="a", always=True)
    chunk = StoredOutput("i", "c", "n", 0, "stdout", 0, 4)
    first = db.sessionmaker()
    first.begin()
    log.note(first, [chunk])
    first.flush()  # number 1 taken; its transaction stays open

    def second() -> list[int]:
        with db.sessionmaker() as session, session.begin():
            log.note(session, [chunk])
        with db.sessionmaker() as session:
            return [c.seq for c in outputlog.read_chunks(session, 0)]

    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(second)
        time.sleep(0.5)
        assert not seen.done()  # waiting for the first to end, before taking a number
        first.commit()
        assert seen.result(timeout=10) == [1, 2]
    first.close()


async def test_a_state_change_decided_on_a_stale_read_is_not_made_twice(db):
    from fleetrun.core.alarms import AlarmState, Decision
    from fleetrun.schemas.alarms import AlarmCreate
    from fleetrun.server.store import alarms as store
    from fleetrun.server.store.tables import Alarm, AlarmHistory

    body = AlarmCreate(name="a", pattern="ERROR", threshold=1, period_s=60)
    await db.write(lambda tx: store.create_alarm(tx.session, body, None, T0))
    firing = Decision(AlarmState.ALARM, "Threshold crossed.")
    with db.sessionmaker() as stale:  # one replica read the alarm...
        seen = stale.get(Alarm, "a")
        assert seen is not None and seen.state == "INSUFFICIENT_DATA"
        stale.commit()  # its read is over; what it read stays in hand
        # ...another moved it meanwhile
        assert await db.write(
            lambda tx: store.change_state(tx.session, tx.session.get(Alarm, "a"), firing, T0)
        )
        assert store.change_state(stale, seen, firing, T0) is False
        stale.commit()
    history = await db.read(lambda s: s.query(AlarmHistory).count())
    assert history == 1


async def test_a_cursor_added_twice_is_added_once(db):
    """Replicas starting together both add the forwarders' cursors: one row, the first."""
    from fleetrun.server.store.tables import OutputCursor

    await db.write(lambda tx: outputlog.add_cursor(tx.session, "forward:otlp", 7, T0))
    await db.write(lambda tx: outputlog.add_cursor(tx.session, "forward:otlp", 9, T0))
    rows = await db.read(lambda s: [c.seq for c in s.query(OutputCursor).all()])
    assert rows == [7]


def _chunk(seq, offset, length, stream="stdout"):
    return outputlog.Chunk(seq, T0, "i", "c", "n", 0, stream, offset, length)


async def _lines(store, chunks):
    labels = {"i": outputlog.Labels("web01", "RunShellScript", {})}
    return [
        (line.seq, line.stream, line.text)
        for line in (await outputlog.lines_of(store, chunks, labels)).lines
    ]


async def test_lines_are_those_each_chunk_completes_whether_read_in_a_row_or_alone(tmp_path):
    from fleetrun.server.output import LocalOutputStore

    store = LocalOutputStore(tmp_path)
    out, err = b"one\ntw" + b"o\nthr" + b"ee" + b"\nfour\n", b"oops\n"
    store.write("c/n/0.stdout", 0, out)
    store.write("c/n/0.stderr", 0, err)
    row = [_chunk(1, 0, 6), _chunk(2, 6, 5), _chunk(3, 0, 5, "stderr"), _chunk(4, 11, 2)]
    row.append(_chunk(5, 13, 6))
    expected = [(1, "stdout", "one"), (2, "stdout", "two"), (3, "stderr", "oops")]
    expected += [(5, "stdout", "three"), (5, "stdout", "four")]
    assert await _lines(store, row) == expected
    # each chunk alone (a batch that starts there): the same lines, reaching back
    alone = [line for c in row for line in await _lines(store, [c])]
    assert alone == expected


async def test_a_line_longer_than_the_look_back_is_counted_from_its_chunk_on(tmp_path):
    from fleetrun.server.output import LocalOutputStore

    store = LocalOutputStore(tmp_path)
    size = outputlog.LOOKBACK_BYTES + 100
    store.write("c/n/0.stdout", 0, b"a" * size + b"b\nc\n")
    chunks = [_chunk(1, 0, size), _chunk(2, size, 4)]
    assert await _lines(store, chunks) == [(2, "stdout", "b"), (2, "stdout", "c")]
    assert await _lines(store, chunks[1:]) == [(2, "stdout", "b"), (2, "stdout", "c")]


def test_an_evaluators_look_from_before_an_alarm_was_created_does_not_stop_noting():
    """The evaluator read "no alarm" just before one was created: its answer is not kept,
    so the output stored next is noted and counted (it was lost under load)."""
    from fleetrun.core.clock import SystemClock

    log = outputlog.OutputLog(SystemClock())
    log.alarm_creating()  # an alarm is being created...
    during = log.created  # ...when the evaluator starts its look
    log.alarms_seen(False, during)  # and reads "none" before the alarm commits
    assert log.wanted
    log.alarm_created()  # committed
    log.alarms_seen(False, during)  # a look from before the commit ends later: not kept
    assert log.wanted
    before = log.created  # the evaluator starts its look
    log.alarm_created()  # an alarm is created through another replica meanwhile
    log.alarms_seen(False, before)  # the look ends: "none", from before
    assert log.wanted
    log.alarms_seen(False, log.created)  # a look from after: the alarm was deleted
    assert not log.wanted
    log.alarms_seen(True, before)  # "some" is always kept
    assert log.wanted


def _stored_by(seq, offset, length, replica, stream="stdout"):
    return outputlog.Chunk(seq, T0, "i", "c", "n", 0, stream, offset, length, replica)


async def test_a_chunk_on_a_live_replicas_own_store_is_handed_to_it(tmp_path):
    """Replicas with a data directory each: the bytes of a chunk replica b stored are
    only on b. Reading stops before it (b reads it), rather than forwarding nothing for
    it and moving on: its lines would be lost."""
    from fleetrun.server.output import LocalOutputStore

    store = LocalOutputStore(tmp_path)  # replica a's
    store.write("c/n/0.stdout", 0, b"one\n")
    store.write("c/n/0.stderr", 0, b"oops\n")
    chunks = [
        _stored_by(1, 0, 4, "a"),
        _stored_by(2, 4, 4, "b"),
        _stored_by(3, 0, 5, "a", "stderr"),
    ]
    labels = {"i": outputlog.Labels("web01", "RunShellScript", {})}
    read = await outputlog.lines_of(store, chunks, labels, frozenset({"b"}))
    assert [line.text for line in read.lines] == ["one"]
    assert read.upto == 1 and read.handed_over(chunks) and read.unreadable == 0


async def test_a_chunk_nobody_can_read_is_skipped_and_counted(tmp_path):
    """The replica that stored it is gone (or its bytes expired): nothing is waited for;
    the chunks after it are read, and the skip is counted for the operator."""
    from fleetrun.server.output import LocalOutputStore

    store = LocalOutputStore(tmp_path)
    store.write("c/n/0.stdout", 0, b"one\n")
    store.write("c/n/0.stderr", 0, b"oops\n")
    chunks = [
        _stored_by(1, 0, 4, "a"),
        _stored_by(2, 4, 4, "gone"),
        _stored_by(3, 0, 5, "a", "stderr"),
    ]
    labels = {"i": outputlog.Labels("web01", "RunShellScript", {})}
    read = await outputlog.lines_of(store, chunks, labels, frozenset({"b"}))
    assert [line.text for line in read.lines] == ["one", "oops"]
    assert read.upto == 3 and not read.handed_over(chunks) and read.unreadable == 1


async def test_a_batch_names_the_live_replicas_its_chunks_may_be_handed_to(db):
    """claim_batch reads which other replicas are alive (only when a chunk was stored by
    another); a released cursor is claimed by the next replica at once."""
    from fleetrun.server.store import replicas as replica_store

    await db.write(lambda tx: outputlog.ensure_cursor(tx.session, "alarms", T0))
    await db.write(lambda tx: _chunks(tx.session, 2))
    await db.write(
        lambda tx: tx.session.query(OutputChunk).filter_by(seq=2).update({"stored_by": "b"})
    )
    for replica in ("a", "b", "gone"):
        await db.write(lambda tx, r=replica: replica_store.renew(tx.session, r, T0, 30.0))
    await db.write(
        lambda tx: replica_store.renew(tx.session, "gone", T0 - timedelta(minutes=5), 30.0)
    )
    batch = await db.write(
        lambda tx: outputlog.claim_batch(tx.session, "alarms", "srv-a", T0, 15.0, "a")
    )
    assert batch is not None and [c.stored_by for c in batch.chunks] == [None, "b"]
    assert batch.elsewhere == {"b"}
    claim_b = lambda tx: outputlog.claim(tx.session, "alarms", "srv-b", T0, 15.0)  # noqa: E731
    assert await db.write(claim_b) is None  # a holds it
    await db.write(lambda tx: outputlog.release(tx.session, "alarms", "srv-a"))
    assert await db.write(claim_b) == 0
