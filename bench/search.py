"""Output search: how long a search takes over a large index.

    python bench/search.py [--invocations 10000] [--megabytes 1024] [--days 7]
                           [--queries 15] [--database-url URL]

Builds the data through the server's own store function (`store.outputlines.index_chunk`,
what the gateway calls as each chunk of output is stored): `--invocations` invocations,
spread over `--days` days, with `--megabytes` of log-like output in all, in 64 KiB
chunks. (The output files themselves are not written: a search reads only the index.)
Then prints the p50 and p90 of searches as the route runs them (newest first, 100 lines a
page, every line's invocation decided as readable):

    word, rare      a word in 1 line of 50,000: the whole index is consulted
    word, common    a word in 1 line of 100: the first page
    regex, one day  a regular expression, --since one day: the first page
    regex, day scan the same, every page to the end of that day (the database keeps the
                    lines holding its literal parts; the expression is tried on those)
    (?i)regex, scan the same ignoring case: its literal parts in lower case narrow it, cut
                    where a letter may match beyond ASCII (i, k, s)
    no literal, scan a regex with no literal part, every page of the day: nothing narrows
                    it, the expression is tried on every line of the day

Targets: a word p50 <= 500 ms, a regex over one day p50 <= 2 s. The database is SQLite in
a temporary directory unless --database-url names another (a PostgreSQL database that
may be emptied).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _common
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.orm import Session

from fleetrun.core.outputlines import compile_search
from fleetrun.server.store import migrate
from fleetrun.server.store import outputlines as store
from fleetrun.server.store.tables import Command, Invocation, OutputLine

CHUNK = 64 * 1024
RARE, COMMON = "kerfuffle", "throttled"
REGEX = r"status=5\d\d after \d{4}ms"
UNNARROWED = r"[=:]5\d\d \w+ \d{4}\w\w"  # what REGEX finds, with no literal to narrow by
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]


def line(rng: random.Random, at: int) -> str:
    roll = rng.random()
    extra = ""
    if roll < 1 / 50_000:
        extra = f" {RARE}"
    elif roll < 0.01:
        extra = f" {COMMON} by upstream"
    elif roll < 0.012:
        extra = f" status=5{rng.randint(0, 99):02d} after {rng.randint(1000, 9999)}ms"
    words = " ".join(rng.choice(WORDS) for _ in range(6))
    return (
        f"{at} INFO worker-{rng.randint(1, 64)} request id={rng.getrandbits(40):x} {words}{extra}"
    )


def output_of(rng: random.Random, size: int, at: int) -> bytes:
    lines, total = [], 0
    while total < size:
        text = line(rng, at) + "\n"
        lines.append(text)
        total += len(text)
    return "".join(lines).encode()


def rows(table: Any, **values: Any) -> dict[str, Any]:
    """A row of `table` with every required column given a plain value."""
    now = datetime.now(UTC)
    row: dict[str, Any] = {}
    for column in table.__table__.columns:
        if column.name in values:
            row[column.name] = values[column.name]
        elif not column.nullable and column.default is None and not column.primary_key:
            kind = type(column.type).__name__
            if "Date" in kind:
                row[column.name] = now
            elif "Int" in kind:
                row[column.name] = 0
            elif kind == "JSON":
                row[column.name] = {}
            elif kind == "Boolean":
                row[column.name] = False
            else:
                row[column.name] = "x"
    return row


def build(session: Session, invocations: int, megabytes: int, days: float) -> int:
    rng = random.Random(7)
    per = megabytes * 1024 * 1024 // invocations
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    lines = 0
    command_id = ""
    for index in range(invocations):
        if index % 10 == 0:
            command_id = str(uuid.uuid4())
            session.execute(insert(Command), [rows(Command, id=command_id, status="Success")])
        inv = SimpleNamespace(
            id=str(uuid.uuid4()), command_id=command_id, node_id=f"n-{index % 500:017x}"
        )
        session.execute(
            insert(Invocation),
            [rows(Invocation, id=inv.id, command_id=command_id, node_id=inv.node_id)],
        )
        at = start + (end - start) * (index / invocations)
        data = output_of(rng, per, int(at.timestamp()))
        lines += data.count(b"\n")
        for offset in range(0, len(data), CHUNK):
            piece = data[offset : offset + CHUNK]
            continues = offset > 0 and not data[:offset].endswith(b"\n")
            store.index_chunk(
                session,
                inv,
                0,
                "stdout",
                piece,
                continues_line=continues,
                at=at,  # type: ignore[arg-type]
            )
        if index % 50 == 49:
            session.commit()
            print(f"\r  {index + 1}/{invocations} invocations, {lines} lines", end="", flush=True)
    session.commit()
    print()
    return lines


def timed(
    session: Session, pattern: str, regex: bool, since: datetime | None, pages: bool
) -> float:
    compiled = compile_search(pattern, regex=regex)
    scope = store.Scope(since=since)
    started = time.perf_counter()
    cursor = None
    while True:
        found = store.search(
            session, compiled, scope, limit=100, before=cursor, keep=lambda s, r: r
        )
        cursor = found.next_cursor
        if not pages or cursor is None:
            return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="search what --database-url holds, build nothing"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = create_engine(url)
        with engine.begin() as connection:
            migrate.upgrade(connection)
        with Session(engine) as session:
            if args.reuse:
                lines = session.execute(select(func.count()).select_from(OutputLine)).scalar()
                print(f"searching {lines} lines already stored ({engine.dialect.name})")
            else:
                started = time.perf_counter()
                lines = build(session, args.invocations, args.megabytes, args.days)
                took = time.perf_counter() - started
                print(
                    f"built {args.invocations} invocations, {args.megabytes} MB, {lines} lines "
                    f"over {args.days:g} days in {took:.0f} s ({engine.dialect.name})"
                )
            day = datetime.now(UTC) - timedelta(days=1)
            cases = {
                "word, rare": (RARE, False, None, False),
                "word, common": (COMMON, False, None, False),
                "regex, one day": (REGEX, True, day, False),
                "regex, day scan": (REGEX, True, day, True),
                "(?i)regex, scan": ("(?i)" + REGEX, True, day, True),
                # no literal part to narrow the lines by: tried on every line of the day
                "no literal, scan": (UNNARROWED, True, day, True),
            }
            for name, (pattern, regex, since, pages) in cases.items():
                times = [timed(session, pattern, regex, since, pages) for _ in range(args.queries)]
                print(
                    f"{name:<16} p50 {_common.median(times):8.1f} ms   "
                    f"p90 {_common.percentile(times, 90):8.1f} ms"
                )


if __name__ == "__main__":
    main()
