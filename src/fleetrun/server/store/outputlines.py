"""The search index of output: every stored line, kept as output is stored, and the
queries over it.

`index_chunk` makes a stored chunk's lines and `insert_lines` adds them
(`fleetrun.server.indexer` calls them, right after the gateway has stored the chunk). A
word search asks the database's full-text index (SQLite FTS5, PostgreSQL `tsvector` over
a GIN index); a regular expression is applied here to the lines of the time range asked
for, after the database has kept only the lines holding its literal parts
(`Pattern.required`). Both go from the newest line to older ones, a batch at a time, so
a search stops as soon as it has found enough, and at most `SCAN_LINES` lines
(`SCAN_LINES_FILTERED` when the database narrows them) are looked at per request (the
answer's cursor goes on from there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from fleetrun.core.outputlines import Pattern, split_chunk
from fleetrun.server.store.tables import OutputLine

NO_ID = 2**62  # above every line id
BATCH = 2000
LOAD = 200  # lines loaded whole (and decided) at a time
SCAN_LINES = 400_000  # lines a regular expression is tried on per request, at most
# A regular expression with literal parts: the database narrows the lines first, a
# window of ids at a time, and goes this far per request.
WINDOW = 100_000
LEAST = 100  # candidates asked for at a time, at least (the caller may keep few of them)
SCAN_LINES_FILTERED = 4_000_000


@dataclass(frozen=True)
class Owner:
    """Whose output a chunk is."""

    id: str  # the invocation's
    command_id: str
    node_id: str


def index_chunk(
    session: Session,
    inv: Owner,
    step: int,
    stream: str,
    data: bytes,
    *,
    continues_line: bool,
    at: datetime,
    first_chunk: bool = False,
) -> list[dict[str, Any]]:
    """Index a chunk just stored; `continues_line` when the stream so far did not end
    with a line break (its last indexed line grows), `first_chunk` when nothing of the
    stream is indexed yet (there is no last line to look up). The last line grown is
    updated here; the new lines are returned, for `insert_lines` to insert together
    with those of the other chunks of the pass."""
    if not data:
        return []
    where = (
        OutputLine.invocation_id == inv.id,
        OutputLine.step == step,
        OutputLine.stream == stream,
    )
    last = (
        None
        if first_chunk
        else session.execute(
            select(OutputLine.line_no, OutputLine.text)
            .where(*where)
            .order_by(OutputLine.line_no.desc())
            .limit(1)
        ).first()
    )
    last_no = last.line_no if last else 0
    partial = last.text if (last is not None and continues_line) else None
    lines = split_chunk(partial, last_no, data)
    texts = lines.texts
    if lines.replaces_last and texts:
        session.execute(
            update(OutputLine)
            .where(*where, OutputLine.line_no == lines.first_no)
            .values(text=texts[0], at=at)
        )
        texts = texts[1:]
        first = lines.first_no + 1
    else:
        first = lines.first_no
    return [
        {
            "invocation_id": inv.id,
            "command_id": inv.command_id,
            "node_id": inv.node_id,
            "step": step,
            "stream": stream,
            "line_no": first + i,
            "at": at,
            "text": line,
        }
        for i, line in enumerate(texts)
    ]


def insert_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert the lines `index_chunk` gathered (in statements of at most 1,000 rows)."""
    for start in range(0, len(rows), 1000):
        session.execute(insert(OutputLine), rows[start : start + 1000])


def forget(session: Session, invocation_ids: Sequence[str]) -> None:
    """Drop these invocations' lines (the retention sweep, as their output expires)."""
    session.execute(
        delete(OutputLine)
        .where(OutputLine.invocation_id.in_(invocation_ids))
        .execution_options(synchronize_session=False)
    )


@dataclass
class Scope:
    """Where to look: all of it when a field is None."""

    command_id: str | None = None
    node_ids: Sequence[str] | None = None
    stream: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class Found:
    lines: list[OutputLine] = field(default_factory=list)
    next_cursor: int | None = None  # search on below this line id


Keep = Callable[[Session, list[OutputLine]], list[OutputLine]]


def search(
    session: Session,
    pattern: Pattern,
    scope: Scope,
    *,
    limit: int,
    before: int | None,
    keep: Keep,
) -> Found:
    """The newest matching lines the caller may read (`keep` decides), below the line
    id `before` when given."""
    found = Found()
    scanned = 0
    cursor = before
    floor = _first_id(session, scope.since, 0)
    ceiling = _first_id(session, scope.until, NO_ID)
    if ceiling == NO_ID:
        ceiling = (session.execute(select(func.max(OutputLine.id))).scalar() or 0) + 1
    limit_scan = SCAN_LINES_FILTERED if pattern.required else SCAN_LINES
    while True:
        want = limit - len(found.lines)
        hits, cursor, more, looked_at = _batch(
            session, pattern, scope, cursor, floor, ceiling, want
        )
        scanned += looked_at
        for start in range(0, len(hits), LOAD):  # rows are loaded only as far as needed
            for row in keep(session, _rows(session, hits[start : start + LOAD])):
                found.lines.append(row)
                if len(found.lines) >= limit:
                    found.next_cursor = row.id
                    return found
        if not more:
            return found
        if scanned >= limit_scan:
            found.next_cursor = cursor
            return found


def _rows(session: Session, ids: list[int]) -> list[OutputLine]:
    if not ids:
        return []
    query = select(OutputLine).where(OutputLine.id.in_(ids)).order_by(OutputLine.id.desc())
    return list(session.execute(query).scalars())


def _first_id(session: Session, at: datetime | None, default: int) -> int:
    """The id of the first line stored at or after `at`. Ids grow with the time lines are
    stored, so a time range is an id range: a search of the last day reads that day
    only, however much is older."""
    if at is None:
        return default
    first = session.execute(
        select(OutputLine.id).where(OutputLine.at >= at).order_by(OutputLine.at).limit(1)
    ).scalar()
    return int(first) if first is not None else NO_ID


def _batch(
    session: Session,
    pattern: Pattern,
    scope: Scope,
    before: int | None,
    floor: int,
    ceiling: int,
    want: int,
) -> tuple[list[int], int | None, bool, int]:
    """One batch, newest first: (ids of the lines in scope that match, where the next
    batch starts, whether there may be more, how many lines it looked at). `want`: the
    lines still missing from the page; a narrowed scan stops once it has that many."""
    bound = ceiling if before is None else min(before, ceiling)
    if pattern.regex is None:
        ids = _word_ids(session, pattern.text, bound, floor)
        if not ids:
            return [], before, False, BATCH
        in_scope = select(OutputLine.id).where(*_scoped(scope), OutputLine.id.in_(ids))
        return list(session.execute(in_scope).scalars()), min(ids), len(ids) == BATCH, BATCH
    # By id alone: the time range is the id range [floor, ceiling); a condition on the
    # time itself would let the database walk the whole range, by time, for every batch.
    untimed = Scope(scope.command_id, scope.node_ids, scope.stream)
    low = max(floor, bound - WINDOW) if pattern.required else floor
    scan = select(OutputLine.id, OutputLine.text).where(
        *_scoped(untimed), OutputLine.id >= low, OutputLine.id < bound
    )
    if pattern.required:
        # The database keeps only the lines holding the expression's literal parts (as
        # bound values, never SQL): the expression is tried on those alone.
        position = func.instr if session.get_bind().dialect.name == "sqlite" else func.strpos
        haystack = func.lower(OutputLine.text) if pattern.folded else OutputLine.text
        scan = scan.where(*(position(haystack, part) > 0 for part in pattern.required))
    size = min(BATCH, max(want, LEAST)) if pattern.required else BATCH
    rows = session.execute(scan.order_by(OutputLine.id.desc()).limit(size)).all()
    hits = [i for i, line in rows if pattern.matches(line)]
    if len(rows) == size:  # the batch is full: go on below its last line
        last = rows[-1][0]
        return hits, last, True, (bound - last if pattern.required else BATCH)
    if pattern.required:  # the window is done: go on below it
        return hits, low, low > floor, bound - low
    return hits, (rows[-1][0] if rows else before), False, BATCH


def _word_ids(session: Session, words: str, bound: int, floor: int) -> list[int]:
    """The ids of up to BATCH lines holding these words in this order, newest first,
    in [floor, bound)."""
    if session.get_bind().dialect.name == "sqlite":
        phrase = '"' + words.replace('"', '""') + '"'
        fts = text(
            "SELECT rowid FROM output_lines_fts WHERE output_lines_fts MATCH :phrase "
            "AND rowid < :bound AND rowid >= :floor ORDER BY rowid DESC LIMIT :n"
        )
        values = {"phrase": phrase, "bound": bound, "floor": floor, "n": BATCH}
        found = session.execute(fts, values)
        return [int(r[0]) for r in found]
    vector = func.to_tsvector("simple", OutputLine.text)
    query = (
        select(OutputLine.id)
        .where(
            vector.op("@@")(func.phraseto_tsquery("simple", words)),
            OutputLine.id < bound,
            OutputLine.id >= floor,
        )
        .order_by(OutputLine.id.desc())
        .limit(BATCH)
    )
    return [int(i) for i in session.execute(query).scalars()]


def _scoped(scope: Scope) -> list[ColumnElement[bool]]:
    """The conditions of a search's scope."""
    where = []
    if scope.command_id is not None:
        where.append(OutputLine.command_id == scope.command_id)
    if scope.node_ids is not None:
        where.append(OutputLine.node_id.in_(list(scope.node_ids)))
    if scope.stream is not None:
        where.append(OutputLine.stream == scope.stream)
    if scope.since is not None:
        where.append(OutputLine.at >= scope.since)
    if scope.until is not None:
        where.append(OutputLine.at < scope.until)
    return where


def context(session: Session, row: OutputLine, lines: int) -> tuple[list[str], list[str]]:
    """The `lines` lines before and after a found line, in the same stream."""
    if lines <= 0:
        return [], []
    near = session.execute(
        select(OutputLine.line_no, OutputLine.text)
        .where(
            OutputLine.invocation_id == row.invocation_id,
            OutputLine.step == row.step,
            OutputLine.stream == row.stream,
            OutputLine.line_no.between(row.line_no - lines, row.line_no + lines),
        )
        .order_by(OutputLine.line_no)
    ).all()
    before = [t for n, t in near if n < row.line_no]
    after = [t for n, t in near if n > row.line_no]
    return before, after
