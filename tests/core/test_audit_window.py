"""Exports of the audit log, checked offline: a window verifies from its first
record's predecessor hash, the signed head shows records cut off either end, and an
empty file or one without its head is never intact."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.core.audit import (
    GENESIS,
    chain_hash,
    public_key_of,
    sign_head,
    verify_export,
)
from fleetrun.core.errors import ValidationError

KEY = Ed25519PrivateKey.generate()
PUBLIC = public_key_of(KEY)
OTHER = public_key_of(Ed25519PrivateKey.generate())

Lines = list[dict[str, Any]]


def chain(n: int) -> Lines:
    records, prev = [], GENESIS
    for seq in range(1, n + 1):
        record: dict[str, Any] = {
            "seq": seq,
            "at": datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC).isoformat(),
            "kind": "request",
            "principal": "ann",
            "action": "fleetrun:ListNodes",
            "resource": None,
            "decision": "allow",
            "source_ip": "127.0.0.1",
            "request_id": f"r{seq}",
            "method": "GET",
            "path": "/v1/nodes",
            "status": 200,
            "detail": {},
            "prev_hash": prev,
        }
        record["hash"] = prev = chain_hash(prev, record)
        records.append(record)
    return records


def export(records: Lines, from_seq: int, upto: int) -> Lines:
    """What the server writes: records from_seq..upto, then the signed head at upto."""
    window = [r for r in records if from_seq <= r["seq"] <= upto]
    head_hash = records[upto - 1]["hash"] if upto else GENESIS
    return [*window, sign_head(KEY, from_seq, upto, head_hash)]


def test_a_whole_export_is_intact() -> None:
    verdict = verify_export(export(chain(5), 1, 5), PUBLIC)
    assert verdict.ok and verdict.records == 5 and "intact" in verdict.message


@pytest.mark.parametrize(("from_seq", "upto"), [(4, 10), (10, 10), (2, 7)])
def test_a_window_is_intact_from_its_first_records_predecessor(from_seq: int, upto: int) -> None:
    """`audit export --since 2m` starts anywhere: it does not need record 1 or GENESIS."""
    verdict = verify_export(export(chain(10), from_seq, upto), PUBLIC)
    assert verdict.ok, verdict.message
    assert verdict.records == upto - from_seq + 1


def cut_tail(lines: Lines) -> Lines:
    return [*lines[:-3], lines[-1]]


def cut_start(lines: Lines) -> Lines:
    return lines[2:]


def edit_record(lines: Lines) -> Lines:
    lines[1]["status"] = 500
    return lines


def edit_and_rehash_all(lines: Lines) -> Lines:
    """Rewrite a record and every hash after it: only the signed head can tell."""
    lines[1]["status"] = 500
    prev = lines[0]["hash"]
    for record in lines[1:-1]:
        record["prev_hash"] = prev
        record["hash"] = prev = chain_hash(prev, record)
    return lines


def append_forged(lines: Lines) -> Lines:
    *records, head = lines
    forged = dict(records[-1], seq=records[-1]["seq"] + 1, prev_hash=records[-1]["hash"])
    forged["hash"] = chain_hash(forged["prev_hash"], forged)
    return [*records, forged, head]


def drop_head(lines: Lines) -> Lines:
    return lines[:-3]


def forge_head(lines: Lines) -> Lines:
    """Cut the tail and re-sign a head with a key that is not the server's."""
    *records, head = lines
    records = records[:-2]
    other = Ed25519PrivateKey.generate()
    return [
        *records,
        sign_head(other, head["head"]["from_seq"], records[-1]["seq"], records[-1]["hash"]),
    ]


def move_head(lines: Lines) -> Lines:
    """Cut the tail and edit the head to match, keeping the old signature."""
    *records, head = lines
    records = records[:-2]
    head = {"head": dict(head["head"], seq=records[-1]["seq"], hash=records[-1]["hash"])}
    return [*records, head]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (cut_tail, "missing"),
        (cut_start, "missing"),
        (edit_record, "altered"),
        (edit_and_rehash_all, "altered"),
        (append_forged, "altered"),
        (drop_head, "truncated"),
        (forge_head, "altered"),
        (move_head, "altered"),
    ],
)
def test_tampering_with_a_window_shows(tamper: Callable[[Lines], Lines], problem: str) -> None:
    verdict = verify_export(tamper(export(chain(10), 3, 10)), PUBLIC)
    assert not verdict.ok and verdict.problem == problem, verdict.message
    assert verdict.message.endswith(".")


def test_a_cut_tail_names_the_first_missing_record() -> None:
    verdict = verify_export(cut_tail(export(chain(10), 3, 10)), PUBLIC)
    assert verdict.first_bad_seq == 9 and "ends at record 8 of 10" in verdict.message


@pytest.mark.parametrize(
    "lines",
    [[], [sign_head(KEY, 11, 10, chain(10)[-1]["hash"])]],
    ids=["empty-file", "head-only"],
)
def test_an_export_without_records_is_never_intact(lines: Lines) -> None:
    verdict = verify_export(lines, PUBLIC)
    assert not verdict.ok and verdict.problem == "empty"


def test_another_servers_key_does_not_verify_the_head() -> None:
    verdict = verify_export(export(chain(5), 1, 5), OTHER)
    assert not verdict.ok and "audit key" in verdict.message


def test_a_public_key_that_is_not_one_is_a_sentence() -> None:
    with pytest.raises(ValidationError, match="not base64 of an Ed25519 key"):
        verify_export(export(chain(2), 1, 2), "not-a-key")
