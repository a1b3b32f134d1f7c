"""The audit log's rows: appended in batches to a hash chain, read back in order.

The writer locks the one `audit_head` row, so replicas sharing a database extend the
chain one after another and every record gets the next number.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from fleetrun.core import audit as chain
from fleetrun.schemas import audit as schemas
from fleetrun.server.store.paging import decode_seq_cursor
from fleetrun.server.store.tables import AuditHead, AuditRecord

VERIFY_BATCH = 2000


def append_records(session: Session, entries: Sequence[Mapping[str, Any]]) -> int:
    """Number and chain the entries (field -> value, see core.audit.FIELDS); the last
    number given."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=chain.GENESIS)
        session.add(head)
    seq, prev = head.seq, head.hash
    rows = []
    for entry in entries:
        seq += 1
        record = {name: storable(entry.get(name)) for name in chain.FIELDS}
        record["seq"] = seq
        record["detail"] = dict(record.get("detail") or {})
        digest = chain.chain_hash(prev, record)
        rows.append({**record, "prev_hash": prev, "hash": digest})
        prev = digest
    if rows:
        session.execute(insert(AuditRecord), rows)
    head.seq, head.hash = seq, prev
    return seq


def storable(value: Any) -> Any:
    """The value with every NUL character replaced (U+FFFD): what a request carried,
    such as `%00` in its path, is recorded as it came but for that, which PostgreSQL
    refuses in text. A refused batch was tried again for ever, and every record after
    it waited: one request could stop the audit log."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def read_records(
    session: Session,
    *,
    since: datetime | None = None,
    principal: str | None = None,
    action: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[AuditRecord], str | None]:
    """Newest first; the cursor is the number of the last record of the page."""
    query = select(AuditRecord).order_by(AuditRecord.seq.desc())
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if principal:
        query = query.where(AuditRecord.principal == principal)
    if action:
        query = query.where(AuditRecord.action == action)
    if cursor:
        query = query.where(AuditRecord.seq < decode_seq_cursor(cursor))
    rows = list(session.execute(query.limit(limit + 1)).scalars())
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor


def read_after(
    session: Session, after: int, *, upto: int | None = None, limit: int = VERIFY_BATCH
) -> list[dict[str, Any]]:
    """Up to `limit` records numbered above `after` (and at most `upto`), in order, as
    plain dicts."""
    query = select(AuditRecord).where(AuditRecord.seq > after)
    if upto is not None:
        query = query.where(AuditRecord.seq <= upto)
    rows = session.execute(query.order_by(AuditRecord.seq).limit(limit)).scalars()
    return [as_dict(r) for r in rows]


def read_window(session: Session, since: datetime | None) -> tuple[int, int, str]:
    """An export's window as it stands now: (from_seq, head seq, head hash). It runs
    from the first record at or after `since` to the head, every record in between
    (times are not strictly in order of numbers, the window is in numbers)."""
    head = session.get(AuditHead, 1)
    seq, digest = (head.seq, head.hash) if head is not None else (0, chain.GENESIS)
    if since is None:
        return 1, seq, digest
    first = session.execute(
        select(func.min(AuditRecord.seq)).where(AuditRecord.at >= since)
    ).scalar_one_or_none()
    return (first if first is not None else seq + 1), seq, digest


def iter_records(session: Session, *, batch: int = VERIFY_BATCH) -> Iterator[dict[str, Any]]:
    """Every record in order of its number, a batch at a time."""
    after = 0
    while True:
        rows = read_after(session, after, limit=batch)
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]
        session.expunge_all()


def verify_log(session: Session) -> chain.Verdict:
    head = session.get(AuditHead, 1)
    head_pair = (head.seq, head.hash) if head is not None else None
    return chain.verify(iter_records(session), head_pair)


def as_dict(row: AuditRecord) -> dict[str, Any]:
    data = {name: getattr(row, name) for name in chain.FIELDS}
    data["prev_hash"] = row.prev_hash
    data["hash"] = row.hash
    return data


def to_schema(row: AuditRecord) -> schemas.AuditRecord:
    return schemas.AuditRecord(**as_dict(row))
