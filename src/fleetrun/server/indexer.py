"""The search index kept up as output is stored, off the path that stores it.

The gateway stores output and acknowledges it without waiting for the index: indexing a
busy node's lines (tens of thousands a second) inside that transaction would slow every
node's output behind it. Each step's stream records how far it is indexed
(`stdout_indexed`, `stderr_indexed`); after each commit the gateway names the streams
that grew, and this loop reads their new bytes back from the output store and indexes
them, a bounded amount per transaction, so the single SQLite writer is never held long.
The mark moves in the transaction that adds the lines, only from where it was read
(`WHERE stdout_indexed = <read>`): two replicas never index the same bytes twice, and a
restart resumes where the marks stand (streams left behind are found at start).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from fleetrun.server.db import Tx
from fleetrun.server.output import stream_key
from fleetrun.server.store import outputlines as store
from fleetrun.server.store.tables import Invocation, InvocationStep, utcnow

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

TX_BYTES = 256 * 1024  # output indexed per transaction, about
RETRY_S = 1.0
READ_CHUNK = 500  # invocations per statement when reading marks

Key = tuple[str, int, str]  # (invocation id, step, stream)


@dataclass(frozen=True)
class Work:
    key: Key
    command_id: str
    node_id: str
    start: int  # indexed so far
    end: int  # stored
    data: bytes = b""
    continues_line: bool = False


class StaleMarkError(Exception):
    """Another replica indexed these bytes first."""


class OutputIndexer:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._pending: set[Key] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Find the streams left behind (read before the server says it is ready), then
        index as output grows."""
        self.grew(set(await self.state.db.read(_behind)))
        self._task = asyncio.create_task(self._loop(), name="output-indexer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def grew(self, keys: set[Key]) -> None:
        """These streams have more output stored (called after the commit)."""
        if keys:
            self._pending |= keys
            self._idle.clear()
            self._wake.set()

    async def drain(self) -> None:
        """Return once everything named so far is indexed (the tests wait so)."""
        await self._idle.wait()

    async def _loop(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            keys, self._pending = self._pending, set()
            try:
                left = await self._pass(keys)
            except Exception:
                log.exception("indexing output of %d stream(s) failed; trying again", len(keys))
                left = keys
                await asyncio.sleep(RETRY_S)
            if left:
                self.grew(left)

    async def _pass(self, keys: set[Key]) -> set[Key]:
        """Index up to TX_BYTES of these streams; the keys with more left."""
        works = await self.state.db.read(partial(_read_marks, keys))
        budget, chosen, left = TX_BYTES, [], set()
        for work in works:
            if budget <= 0:
                left.add(work.key)
                continue
            end = min(work.end, work.start + budget)
            chosen.append(await self._with_bytes(work, end))
            budget -= end - work.start
            if end < work.end:
                left.add(work.key)
        if chosen:
            try:
                await self.state.db.write(partial(_index, chosen))
            except StaleMarkError:
                return left | {w.key for w in chosen}  # read the marks again
        return left

    async def _with_bytes(self, work: Work, end: int) -> Work:
        _, step, stream = work.key
        key = stream_key(work.command_id, work.node_id, step, stream)
        first = max(work.start - 1, 0)
        chunks = [c async for c in self.state.output.read(key, first, end)]
        data = b"".join(chunks)
        continues = work.start > 0 and data[:1] != b"\n"
        if work.start > 0:
            data = data[1:]
        return Work(work.key, work.command_id, work.node_id, work.start, end, data, continues)


def _behind(session: Session) -> list[Key]:
    """Streams stored further than they are indexed (a restart, a crash)."""
    rows = session.execute(
        select(InvocationStep.invocation_id, InvocationStep.idx, InvocationStep.stdout_bytes)
        .add_columns(InvocationStep.stdout_indexed, InvocationStep.stderr_bytes)
        .add_columns(InvocationStep.stderr_indexed)
        .where(
            or_(
                InvocationStep.stdout_indexed < InvocationStep.stdout_bytes,
                InvocationStep.stderr_indexed < InvocationStep.stderr_bytes,
            )
        )
    ).all()
    keys: list[Key] = []
    for inv, idx, out, out_done, err, err_done in rows:
        if out_done < out:
            keys.append((inv, idx, "stdout"))
        if err_done < err:
            keys.append((inv, idx, "stderr"))
    return keys


def _read_marks(keys: set[Key], session: Session) -> list[Work]:
    ids = sorted({k[0] for k in keys})
    works = []
    for start in range(0, len(ids), READ_CHUNK):
        found = session.execute(
            select(
                InvocationStep.invocation_id,
                InvocationStep.idx,
                InvocationStep.stdout_indexed,
                InvocationStep.stdout_bytes,
                InvocationStep.stderr_indexed,
                InvocationStep.stderr_bytes,
                Invocation.command_id,
                Invocation.node_id,
            )
            .join(Invocation, Invocation.id == InvocationStep.invocation_id)
            .where(InvocationStep.invocation_id.in_(ids[start : start + READ_CHUNK]))
        )
        for row in found:
            marks = {
                "stdout": (row.stdout_indexed, row.stdout_bytes),
                "stderr": (row.stderr_indexed, row.stderr_bytes),
            }
            for stream, (done, stored) in marks.items():
                key = (row.invocation_id, row.idx, stream)
                if key in keys and done < stored:
                    works.append(Work(key, row.command_id, row.node_id, done, stored))
    return works


def _index(works: list[Work], tx: Tx) -> None:
    _move_marks(tx.session, works)
    at = utcnow()
    new_lines: list[dict[str, Any]] = []  # inserted together: one statement, not one each
    for work in works:
        invocation_id, step, stream = work.key
        new_lines += store.index_chunk(
            tx.session,
            store.Owner(invocation_id, work.command_id, work.node_id),
            step,
            stream,
            work.data,
            continues_line=work.continues_line,
            at=at,
            first_chunk=work.start == 0,
        )
    store.insert_lines(tx.session, new_lines)


def _move_marks(session: Session, works: list[Work]) -> None:
    """Move each stream's mark from where it was read to what is indexed now; if one
    moved meanwhile (another replica indexed those bytes), the whole pass runs again
    on fresh marks. One executemany per stream where the driver counts the rows of
    an executemany; else one statement per stream."""
    steps = cast(Table, InvocationStep.__table__)
    table = steps.c
    together = session.get_bind().dialect.supports_sane_multi_rowcount
    for stream in ("stdout", "stderr"):
        column = table.stdout_indexed if stream == "stdout" else table.stderr_indexed
        rows = [
            {"b_inv": w.key[0], "b_idx": w.key[1], "b_start": w.start, "b_end": w.end}
            for w in works
            if w.key[2] == stream
        ]
        if not rows:
            continue
        statement = (
            update(steps)
            .where(
                table.invocation_id == bindparam("b_inv"),
                table.idx == bindparam("b_idx"),
                column == bindparam("b_start"),
            )
            .values({column.name: bindparam("b_end")})
        )
        for batch in [rows] if together else [[row] for row in rows]:
            moved = session.connection().execute(statement, batch)
            if moved.rowcount != len(batch):
                raise StaleMarkError(batch[0]["b_inv"])
