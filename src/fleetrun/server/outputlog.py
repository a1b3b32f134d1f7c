"""The output log: every stored chunk of output, in order, for the readers that act on
output as it arrives (the alarm evaluator, the forwarders).

`OutputLog.note` is given the chunks the engine stored (`Applied.stored`) in the
transaction that stored them, so a chunk is in the log exactly when its bytes are
acknowledged; it costs one row, and nothing at all while no reader wants output (no
alarm exists, no forwarder is configured). The search indexer reads the same record
after the commit (`ServerState.output_stored`), keeping its own marks per stream.

Chunks are numbered in the order their transactions commit: on PostgreSQL, where
transactions commit in any order, noting takes a transaction-scoped lock first
(`OUTPUT_LOG_LOCK`), so the transaction that took number 6 has ended before another
takes 7. A reader that sees 7 and not 6 knows 6 was rolled back: it never waits on a
gap, and never passes one that could still fill.

Each reader keeps a cursor (`output_cursors`): the highest chunk it has dealt with. A
reader claims its cursor with a lease before it works and moves it with an update
conditioned on that lease, so across replicas one replica at a time reads and acts on a
chunk (design §8). Rows every cursor has passed are deleted.

`lines_of` turns chunks into the lines they complete, labelled with where they come
from; it reads the bytes from the output store, reaching back for the start of a line
the chunk ends. Where replicas keep output in stores of their own (a data directory
each, no shared bucket), a chunk's bytes are only on the replica that stored it
(`stored_by`): a reader that meets such a chunk stops before it and hands the cursor
back, so that replica reads it; a chunk whose replica is gone, or whose bytes are gone,
is skipped and counted as unreadable, never waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from fleetrun.core.alarms import complete_lines
from fleetrun.server.db import publish
from fleetrun.server.output import OutputStore, stream_key
from fleetrun.server.store import replicas as replica_store
from fleetrun.server.store.tables import (
    Command,
    Invocation,
    NodeTag,
    OutputChunk,
    OutputCursor,
)

if TYPE_CHECKING:
    from fleetrun.core.clock import Clock
    from fleetrun.server.engine.invocations import StoredOutput

LOOKBACK_BYTES = 16 * 1024  # how far back a line's start is looked for
BATCH = 500  # chunks per pass
OUTPUT_LOG_LOCK = 847002  # PostgreSQL advisory lock: chunk numbers in commit order
HANDED_OVER = "output-handed-over"  # bus message: a reader's cursor is free to claim


@dataclass(frozen=True)
class Chunk:
    seq: int
    at: datetime
    invocation_id: str
    command_id: str
    node_id: str
    step: int
    stream: str
    offset: int
    length: int
    stored_by: str | None = None


@dataclass(frozen=True)
class Line:
    """One line of output and what it belongs to."""

    seq: int  # of the chunk that completed it
    at: datetime
    text: str
    node_id: str
    node_name: str | None
    tags: dict[str, str]
    command_id: str
    document_name: str
    invocation_id: str
    step: int
    stream: str


class OutputLog:
    def __init__(
        self, clock: Clock, *, replica_id: str | None = None, always: bool = False
    ) -> None:
        self.clock = clock
        self.replica_id = replica_id  # named on the chunks this replica stores
        self.always = always  # a forwarder is configured: every chunk is wanted
        self.alarms = False  # an alarm exists (kept fresh by the alarm evaluator)
        self._created = 0  # alarms created so far, here or through another replica
        self._creating = 0  # alarms being created here, not yet committed

    @property
    def created(self) -> int:
        """Read by the evaluator before it looks whether an alarm exists."""
        return self._created

    def alarm_creating(self) -> None:
        """An alarm is about to be created here: output is noted from now on."""
        self._creating += 1
        self.alarms = True

    def alarm_created(self) -> None:
        """An alarm was created (here, after `alarm_creating`, or through another
        replica): output is noted at once, not from the evaluator's next pass."""
        self._creating = max(0, self._creating - 1)
        self._created += 1
        self.alarms = True

    def alarms_seen(self, exists: bool, created: int) -> None:
        """What the evaluator read, having read `created` before: an answer "none" is
        not kept while an alarm is being created or if one was created since (its
        output would go uncounted)."""
        if exists or (created == self._created and not self._creating):
            self.alarms = exists

    @property
    def wanted(self) -> bool:
        return self.always or self.alarms

    def note(self, session: Session, stored: Sequence[StoredOutput]) -> None:
        """Chunks were stored, in `session`'s transaction: log them if anyone reads."""
        if not self.wanted or not any(c.size for c in stored):
            return
        if session.get_bind().dialect.name == "postgresql":
            # Held to the commit: the next noting transaction numbers its chunks after
            # these are visible (the caller notes last, after its other row locks).
            session.execute(select(func.pg_advisory_xact_lock(OUTPUT_LOG_LOCK)))
        at = self.clock.now()
        for c in stored:
            if c.size:
                session.add(
                    OutputChunk(
                        at=at,
                        invocation_id=c.invocation_id,
                        command_id=c.command_id,
                        node_id=c.node_id,
                        step=c.step,
                        stream=c.stream,
                        offset=c.offset,
                        length=c.size,
                        stored_by=self.replica_id,
                    )
                )


def ensure_cursor(session: Session, name: str, now: datetime) -> None:
    """A new reader starts at the end of the log: what came before it is not its."""
    if session.get(OutputCursor, name) is not None:
        return
    add_cursor(session, name, head(session), now)


def add_cursor(session: Session, name: str, seq: int, now: datetime) -> None:
    """Replicas starting together may both add a cursor: the second insert does nothing."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(OutputCursor)
        .values(name=name, seq=seq, sent_lines=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def claim(session: Session, name: str, owner: str, now: datetime, lease_s: float) -> int | None:
    """Lease the cursor for `owner`: its position, or None if another replica holds it."""
    ensure_cursor(session, name, now)
    result = session.execute(
        update(OutputCursor)
        .where(
            OutputCursor.name == name,
            or_(
                OutputCursor.leased_by.is_(None),
                OutputCursor.leased_by == owner,
                OutputCursor.lease_until < now,
            ),
        )
        .values(leased_by=owner, lease_until=now + timedelta(seconds=lease_s))
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    cursor = session.get(OutputCursor, name)
    assert cursor is not None
    session.refresh(cursor)
    return cursor.seq


def advance(session: Session, name: str, owner: str, seq: int, lines: int, now: datetime) -> bool:
    """Move the cursor to `seq`, if `owner` still holds it (else another replica took
    over after the lease ran out, and its work counts)."""
    result = session.execute(
        update(OutputCursor)
        .where(OutputCursor.name == name, OutputCursor.leased_by == owner)
        .values(
            seq=seq,
            sent_lines=OutputCursor.sent_lines + lines,
            last_ok_at=now,
            updated_at=now,
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def settle(
    session: Session,
    name: str,
    owner: str,
    chunks: Sequence[Chunk],
    read: Read,
    sent: int,
    now: datetime,
) -> bool:
    """After a reader dealt with `read` of `chunks`: move the cursor over the chunks it
    read, and give the lease up if it stopped at one another replica holds. False if
    the lease was lost meanwhile (another replica's work counts)."""
    done = chunks[: read.upto]
    if done and not advance(session, name, owner, done[-1].seq, sent, now):
        return False
    if read.handed_over(chunks):
        release(session, name, owner)
    return True


def release(session: Session, name: str, owner: str) -> None:
    """Give the cursor's lease up before it runs out: another replica holds bytes this
    one cannot read. The other replicas are told at the commit (`HANDED_OVER`), so the
    one holding them claims the cursor at once, not at its next sweep."""
    session.execute(
        update(OutputCursor)
        .where(OutputCursor.name == name, OutputCursor.leased_by == owner)
        .values(leased_by=None, lease_until=None)
    )
    publish(session, HANDED_OVER, [name])


@dataclass(frozen=True)
class Batch:
    """Chunks a reader claimed, the labels of their invocations, and the other replicas
    alive when it claimed them (the ones a chunk it cannot read may be handed to)."""

    chunks: list[Chunk]
    labels: dict[str, Labels]
    elsewhere: frozenset[str] = frozenset()


def claim_batch(
    session: Session,
    name: str,
    owner: str,
    now: datetime,
    lease_s: float,
    replica_id: str | None = None,
) -> Batch | None:
    """Lease the cursor `name` and read the batch after it; None if another replica
    holds it."""
    position = claim(session, name, owner, now, lease_s)
    if position is None:
        return None
    chunks = read_chunks(session, position)
    elsewhere: frozenset[str] = frozenset()
    if any(c.stored_by not in (None, replica_id) for c in chunks):
        live = session.execute(replica_store.live(now)).scalars()
        elsewhere = frozenset(live) - {replica_id}
    return Batch(chunks, labels_of(session, chunks), elsewhere)


def behind(session: Session, name: str) -> bool:
    """Whether chunks were logged past the cursor `name` (a read: no lease taken)."""
    cursor = session.get(OutputCursor, name)
    return head(session) > (cursor.seq if cursor else 0)


def report_error(session: Session, name: str, error: str, now: datetime) -> None:
    session.execute(
        update(OutputCursor)
        .where(OutputCursor.name == name)
        .values(last_error=error[:2000], last_error_at=now, updated_at=now)
    )


def read_chunks(session: Session, after: int, limit: int = BATCH) -> list[Chunk]:
    """The chunks after `after`, in order. A missing number was rolled back: numbers
    are taken in commit order (`OutputLog.note`), so it cannot appear later."""
    rows = session.execute(
        select(OutputChunk).where(OutputChunk.seq > after).order_by(OutputChunk.seq).limit(limit)
    ).scalars()
    out: list[Chunk] = []
    for r in rows:
        out.append(
            Chunk(
                r.seq,
                r.at,
                r.invocation_id,
                r.command_id,
                r.node_id,
                r.step,
                r.stream,
                r.offset,
                r.length,
                r.stored_by,
            )
        )
    return out


def head(session: Session) -> int:
    return session.execute(select(func.max(OutputChunk.seq))).scalar() or 0


def prune(session: Session, readers: Iterable[str]) -> int:
    """Delete the chunks every reader (by cursor name) has passed. The newest stays,
    so that a new reader's cursor starts at the true end (`ensure_cursor`) and the
    next number follows it."""
    lowest = session.execute(
        select(func.min(OutputCursor.seq)).where(OutputCursor.name.in_(list(readers)))
    ).scalar()
    newest = head(session)
    lowest = newest - 1 if lowest is None else min(lowest, newest - 1)
    result = session.execute(delete(OutputChunk).where(OutputChunk.seq <= lowest))
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Labels:
    node_name: str | None
    document_name: str
    tags: dict[str, str]


def labels_of(session: Session, chunks: Sequence[Chunk]) -> dict[str, Labels]:
    """Per invocation id: its node's name and tags and its command's document."""
    ids = {c.invocation_id for c in chunks}
    if not ids:
        return {}
    rows = session.execute(
        select(Invocation.id, Invocation.node_id, Invocation.node_name, Command.document_name)
        .join(Command, Command.id == Invocation.command_id)
        .where(Invocation.id.in_(ids))
    ).all()
    node_ids = {r[1] for r in rows}
    tags: dict[str, dict[str, str]] = {n: {} for n in node_ids}
    for node_id, key, value in session.execute(
        select(NodeTag.node_id, NodeTag.key, NodeTag.value).where(NodeTag.node_id.in_(node_ids))
    ):
        tags[node_id][key] = value
    return {r[0]: Labels(r[2], r[3], tags.get(r[1], {})) for r in rows}


@dataclass
class Read:
    """What `lines_of` made of a batch: the lines of its first `upto` chunks (all of
    them, unless a chunk further on is on another replica's store: see `handed_over`),
    and how many of those could not be read at all (`unreadable`, skipped)."""

    lines: list[Line]
    upto: int
    unreadable: int = 0

    def handed_over(self, chunks: Sequence[Chunk]) -> bool:
        """Whether reading stopped at a chunk that another replica can read."""
        return self.upto < len(chunks)


async def lines_of(
    store: OutputStore,
    chunks: Sequence[Chunk],
    labels: dict[str, Labels],
    elsewhere: frozenset[str] = frozenset(),
) -> Read:
    """The lines these chunks complete, in order. A chunk that follows the one before it
    in the same stream reads only its own bytes: the open line it continues is known.

    A chunk whose bytes are not in `store`: if the store is this replica's own and the
    replica that stored the chunk is alive (in `elsewhere`), reading stops before it;
    otherwise nobody can read it, and it is skipped and counted."""
    out: list[Line] = []
    unreadable = 0
    # per stream: where the last chunk read ended, and the bytes since its last newline
    # (at most LOOKBACK_BYTES; that many means a line longer than the look-back)
    open_lines: dict[str, tuple[int, bytes]] = {}
    for index, chunk in enumerate(chunks):
        label = labels.get(chunk.invocation_id)
        if label is None:
            continue  # its command was deleted
        key = stream_key(chunk.command_id, chunk.node_id, chunk.step, chunk.stream)
        end = chunk.offset + chunk.length
        known = open_lines.get(key)
        if known is not None and known[0] == chunk.offset:
            tail, data = known[1], await _read(store, key, chunk.offset, end)
        else:
            start = max(0, chunk.offset - LOOKBACK_BYTES)
            read = await _read(store, key, start, end)
            window, data = read[: chunk.offset - start], read[chunk.offset - start :]
            tail = window[window.rfind(b"\n") + 1 :]
        if len(data) < chunk.length:  # not in this store
            if not store.shared and chunk.stored_by in elsewhere:
                return Read(out, index, unreadable)
            unreadable += 1
            open_lines.pop(key, None)
            continue
        long_line = len(tail) >= LOOKBACK_BYTES and chunk.offset > LOOKBACK_BYTES
        before = b"" if long_line else tail  # a longer line is counted from the chunk on
        newline = data.rfind(b"\n")
        rest = data[newline + 1 :] if newline >= 0 else tail + data
        open_lines[key] = (end, rest[-LOOKBACK_BYTES:])
        for text in complete_lines(before, data):
            out.append(
                Line(
                    seq=chunk.seq,
                    at=chunk.at,
                    text=text,
                    node_id=chunk.node_id,
                    node_name=label.node_name,
                    tags=label.tags,
                    command_id=chunk.command_id,
                    document_name=label.document_name,
                    invocation_id=chunk.invocation_id,
                    step=chunk.step,
                    stream=chunk.stream,
                )
            )
    return Read(out, len(chunks), unreadable)


def unreadable_message(count: int) -> str:
    return (
        f"{count} chunk(s) of output were skipped: their bytes are in no output store a "
        "live replica can read (the replica that stored them is gone, or they expired). "
        "Replicas should share an output store (--output-store s3://BUCKET/PREFIX)."
    )


async def _read(store: OutputStore, key: str, start: int, end: int) -> bytes:
    return b"".join([part async for part in store.read(key, start, end)])
