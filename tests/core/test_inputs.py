"""Boundary checks of outside values: numbers, durations, times, printable text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fleetrun.core import protocol
from fleetrun.core.durations import MAX_DURATION_S, parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import (
    INT64_MAX,
    INT64_MIN,
    check_printable,
    escape_unprintable,
    parse_int,
    utc,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MIN), INT64_MIN),
    ],
)
def test_parse_int_takes_64_bit_whole_numbers(text: str, expected: int) -> None:
    assert parse_int(text, "N") == expected


@pytest.mark.parametrize(
    "text",
    [str(INT64_MAX + 1), str(INT64_MIN - 1), "99999999999999999999", "1e20", "²", " 1", "", "1.0"],
)
def test_parse_int_refuses_what_a_64_bit_column_cannot_hold(text: str) -> None:
    with pytest.raises(ValidationError, match="N"):
        parse_int(text, "N")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("36500d", MAX_DURATION_S)],
)
def test_parse_duration_within_100_years(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["36501d", "9999999d", "99999999999d", "9" * 30 + "w"])
def test_parse_duration_refuses_more_than_100_years(text: str) -> None:
    with pytest.raises(ValidationError, match="too long"):
        parse_duration(text)
    # ... and "that long ago" is then always a time a datetime holds.
    datetime.now(UTC) - timedelta(seconds=MAX_DURATION_S)


@pytest.mark.parametrize("text", ["1hx", "9" * 31, "1.5.5h", "-1h"])
def test_parse_duration_refuses_malformed(text: str) -> None:
    with pytest.raises(ValidationError, match="malformed"):
        parse_duration(text)


@pytest.mark.parametrize(
    "at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
    ],
)
def test_utc_refuses_a_time_that_leaves_the_calendar(at: datetime) -> None:
    with pytest.raises(ValidationError, match="out of range"):
        utc(at, "since")


def test_utc_takes_a_naive_time_as_utc() -> None:
    assert utc(datetime(2026, 1, 31), "t") == datetime(2026, 1, 31, tzinfo=UTC)


@pytest.mark.parametrize("text", ["web-01", "Ünïcode name", "a b"])
def test_printable_names_pass(text: str) -> None:
    assert check_printable(text, "Node name") == text


@pytest.mark.parametrize("text", ["evil\x1b[2J", "two\nlines", "tab\there", "rtl\u202eexe", "\x00"])
def test_unprintable_names_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="unprintable"):
        check_printable(text, "Node name")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        ("red\x1b[31m", "red\\x1b[31m"),
        ("a\nb", "a\\nb"),
        ("x\u202ey", "x\\u202ey"),
    ],
)
def test_escape_unprintable(text: str, shown: str) -> None:
    assert escape_unprintable(text) == shown


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "output", "invocation_id": "i", "seq": 2**64, "step": 0, "stream": "stdout"},
        {"type": "output", "invocation_id": "i", "seq": -1, "step": 0, "stream": "stdout"},
        {"type": "state", "invocation_id": "i", "seq": 1, "status": "Success", "exit_code": 2**70},
        {"type": "state", "invocation_id": "i", "seq": 1, "status": "Success", "ended_at": 1e20},
    ],
)
def test_an_agent_frame_out_of_range_is_unreadable(fields: dict[str, object]) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(json.dumps({"data": "", **fields}))
