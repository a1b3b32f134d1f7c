"""The audit hash chain: what `verify` says about intact, altered and cut logs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetrun.core.audit import GENESIS, chain_hash, verify


def chain(n):
    records, prev = [], GENESIS
    for seq in range(1, n + 1):
        record = {
            "seq": seq,
            "at": datetime(2026, 1, 1, 0, 0, seq, 123456, tzinfo=UTC),
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
            "detail": {"n": seq},
            "prev_hash": prev,
        }
        record["hash"] = prev = chain_hash(prev, record)
        records.append(record)
    return records


def rehash(record, prev):
    record["prev_hash"] = prev
    record["hash"] = chain_hash(prev, record)


def test_an_intact_chain_verifies():
    records = chain(5)
    verdict = verify(records, (5, records[-1]["hash"]))
    assert verdict.ok and verdict.records == 5 and "intact" in verdict.message
    assert verify([]).ok


def edit_field(records):
    records[2]["principal"] = "mallory"


def edit_and_rehash(records):
    records[2]["status"] = 403
    rehash(records[2], records[1]["hash"])


def edit_detail(records):
    records[2]["detail"] = {"n": 99}


def edit_time(records):
    records[2]["at"] = records[2]["at"].replace(microsecond=0)


@pytest.mark.parametrize("tamper", [edit_field, edit_and_rehash, edit_detail, edit_time])
def test_the_first_altered_record_is_named(tamper):
    records = chain(5)
    tamper(records)
    verdict = verify(records, (5, chain(5)[-1]["hash"]))
    assert not verdict.ok
    assert (verdict.problem, verdict.first_bad_seq) == ("altered", 3)
    assert verdict.message.startswith("Record 3 of the audit log was altered")


@pytest.mark.parametrize(("drop", "missing"), [(0, 1), (2, 3), (4, 5)])
def test_the_first_missing_record_is_named(drop, missing):
    records = chain(5)
    head = (5, records[-1]["hash"])
    del records[drop]
    verdict = verify(records, head)
    assert (verdict.ok, verdict.problem, verdict.first_bad_seq) == (False, "missing", missing)


def test_an_altered_newest_record_shows_against_the_head():
    records = chain(3)
    head = (3, records[-1]["hash"])
    records[-1]["path"] = "/v1/other"
    rehash(records[-1], records[-2]["hash"])
    verdict = verify(records, head)
    assert (verdict.problem, verdict.first_bad_seq) == ("altered", 3)
