"""The audit log's hash chain: how a record is hashed, and how a chain is checked.

Records are numbered 1, 2, 3, ... with no gap. Each carries the hash of the record
before it (`prev_hash`; the first carries GENESIS) and its own hash:

    hash(n) = SHA-256( prev_hash(n) "\\n" canonical JSON of record n's fields )

so editing a record changes its hash, rewriting that hash breaks the link the next
record holds, and deleting a record leaves a gap in the numbers. The store also keeps
the newest (seq, hash) apart, so that deleting the newest records shows too. `verify`
names the first record that is missing or was altered.

An export is a window of the chain (from a time, or from record 1) that ends with the
chain's head as it was when the export was cut, signed by the server's audit key:

    {"head": {"from_seq": F, "seq": N, "hash": H, "signature": base64 Ed25519}}

`verify_export` checks a window from its first record's `prev_hash` (the record before
it is not in the file), that it starts at F (nothing cut from its start), and that its
last record is N with hash H (nothing cut from its end, nothing added after it). Only
the server's public key, fetched from the server or given, is trusted for the head: a
key in the file would prove nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetrun.core.errors import ValidationError

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


def verify(
    records: Iterable[Mapping[str, Any]],
    head: tuple[int, str] | None = None,
    *,
    window: bool = False,
) -> Verdict:
    """Check records given in order of `seq` (and, when known, the stored head). A
    `window` may start at any record: it is chained on from that record's prev_hash."""
    expected, prev, count = 1, GENESIS, 0
    for record in records:
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return _altered(expected, count, "it has no record number")
        if window and count == 0:
            expected, prev = seq, str(record.get("prev_hash"))
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
        if head_seq < last and window:
            return _altered(head_seq + 1, count, f"the log goes on past its head, {head_seq}")
        if head_seq == last and last > 0 and head_hash != prev:
            return _altered(last, count, "it does not match the newest hash kept apart")
    return Verdict(
        ok=True,
        records=count,
        message=f"The audit log is intact: {count} record(s), the newest hash {prev[:16]}.",
        last_hash=prev,
    )


HEAD = "head"  # the key of an export's last line


def head_message(from_seq: int, seq: int, hash_: str) -> bytes:
    """The bytes the server signs to close an export: its window and the chain's head."""
    fields = json.dumps([from_seq, seq, hash_], separators=(",", ":"))
    return b"fleetrun-audit-head-v1\n" + fields.encode()


def sign_head(key: Ed25519PrivateKey, from_seq: int, seq: int, hash_: str) -> dict[str, Any]:
    """The last line of an export of records from_seq..seq, whose head has `hash_`."""
    signature = key.sign(head_message(from_seq, seq, hash_))
    return {
        HEAD: {
            "from_seq": from_seq,
            "seq": seq,
            "hash": hash_,
            "signature": base64.b64encode(signature).decode(),
        }
    }


def public_key_of(key: Ed25519PrivateKey) -> str:
    """The base64 raw public key that verifies the server's export heads."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def verify_export(lines: Sequence[Mapping[str, Any]], public_key: str) -> Verdict:
    """Check an export: its records, as a window of the chain, against the signed head
    on its last line. An empty file, or one without its head, is never intact."""
    key = _public_key(public_key)
    if not lines:
        return _bad("empty", 0, "The file holds no audit records: there is nothing to verify.")
    *records, last = lines
    head = last.get(HEAD)
    if not isinstance(head, Mapping):
        return _bad(
            "truncated",
            len(lines),
            "The export does not end with the server's signed head: records may have been "
            "cut off its end; export it again.",
        )
    try:
        from_seq, seq, hash_ = int(head["from_seq"]), int(head["seq"]), str(head["hash"])
        key.verify(
            base64.b64decode(str(head["signature"]), validate=True),
            head_message(from_seq, seq, hash_),
        )
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return _bad(
            "altered",
            len(records),
            "The export's signed head does not verify with the server's audit key: the file "
            "was altered, or it comes from another server.",
        )
    if not records:
        return _bad("empty", 0, "The file holds no audit records: there is nothing to verify.")
    first = records[0].get("seq")
    if isinstance(first, int) and first < from_seq:
        return _altered(first, 0, f"the export was cut from record {from_seq}, not before it")
    if first != from_seq:
        return _missing(
            from_seq, 0, f"the export was cut from record {from_seq} but starts at {first}"
        )
    verdict = verify(records, (seq, hash_), window=True)
    if not verdict.ok:
        return verdict
    return replace(
        verdict,
        message=f"The export is intact: records {from_seq} to {seq} ({verdict.records}), "
        f"up to the head the server signed, {hash_[:16]}.",
    )


def _public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError:
        raise ValidationError(
            f"The audit public key {text!r} is not base64 of an Ed25519 key: give the key of "
            "`GET /v1/audit/key` (or leave --public-key out to fetch it)."
        ) from None


def _bad(problem: str, count: int, message: str) -> Verdict:
    return Verdict(ok=False, records=count, problem=problem, message=message)


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
