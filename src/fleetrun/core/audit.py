"""The audit log's hash chain: how a record is hashed, and how a chain is checked.

Records are numbered 1, 2, 3, ... with no gap. Each carries the hash of the record
before it (`prev_hash`; the first carries GENESIS) and its own hash:

    hash(n) = SHA-256( prev_hash(n) "\\n" canonical JSON of record n's fields )

so editing a record changes its hash, rewriting that hash breaks the link the next
record holds, and deleting a record leaves a gap in the numbers. The store also keeps
the newest (seq, hash) apart, so that deleting the newest records shows too. `verify`
names the first record that is missing or was altered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = (
    "seq",
    "at",
    "kind",
    "principal",
    "action",
    "resource",
    "decision",
    "source_ip",
    "request_id",
    "method",
    "path",
    "status",
    "detail",
)


def _time(value: Any) -> Any:
    """Times as UTC ISO 8601 with microseconds, however they were written (an export
    may say ...Z where the database gave +00:00)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes hashed for a record: its fields in a fixed order, as compact JSON."""
    fields = [_time(record.get(name)) if name == "at" else record.get(name) for name in FIELDS]
    return json.dumps(fields, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(record)).hexdigest()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int  # how many records were checked
    first_bad_seq: int | None = None
    problem: str | None = None  # "altered" or "missing"
    message: str = ""
    last_hash: str | None = None


def verify(records: Iterable[Mapping[str, Any]], head: tuple[int, str] | None = None) -> Verdict:
    """Check records given in order of `seq` (and, when known, the stored head)."""
    expected, prev, count = 1, GENESIS, 0
    for record in records:
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return _altered(expected, count, "it has no record number")
        if seq != expected:
            return _missing(expected, count, f"the log jumps from record {expected - 1} to {seq}")
        if record.get("prev_hash") != prev:
            return _altered(
                seq - 1 if seq > 1 else seq,
                count,
                f"record {seq} no longer links to the record before it",
            )
        if chain_hash(prev, record) != record.get("hash"):
            return _altered(seq, count, "its hash does not match its contents")
        prev, expected, count = str(record["hash"]), expected + 1, count + 1
    last = expected - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last:
            return _missing(last + 1, count, f"the log ends at record {last} of {head_seq}")
        if head_seq == last and last > 0 and head_hash != prev:
            return _altered(last, count, "it does not match the newest hash kept apart")
    return Verdict(
        ok=True,
        records=count,
        message=f"The audit log is intact: {count} record(s), the newest hash {prev[:16]}.",
        last_hash=prev,
    )


def _missing(seq: int, count: int, why: str) -> Verdict:
    return Verdict(
        ok=False,
        records=count,
        first_bad_seq=seq,
        problem="missing",
        message=f"Record {seq} of the audit log is missing ({why}): the log was tampered with.",
    )


def _altered(seq: int, count: int, why: str) -> Verdict:
    return Verdict(
        ok=False,
        records=count,
        first_bad_seq=seq,
        problem="altered",
        message=f"Record {seq} of the audit log was altered ({why}): the log was tampered with.",
    )
