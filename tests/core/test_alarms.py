"""The alarm state machine and line counting, as tables of (input, expected)."""

from __future__ import annotations

import pytest

from fleetrun.core.alarms import (
    AlarmSpec,
    AlarmState,
    Datapoint,
    LineMatcher,
    TreatMissing,
    check_spec,
    complete_lines,
    evaluate,
    period_of,
)
from fleetrun.core.errors import ValidationError

OK, ALARM, NODATA = AlarmState.OK, AlarmState.ALARM, AlarmState.INSUFFICIENT_DATA


def spec(threshold=2, periods=1, missing=TreatMissing.OK):
    return AlarmSpec("ERROR", False, threshold, 60, periods, missing)


def P(lines, matched):
    return Datapoint(lines, matched)


# (spec, points by period, current period, state before, state after)
CASES = [
    # the period in progress decides as soon as it breaches
    (spec(), {10: P(5, 2)}, 10, OK, ALARM),
    (spec(), {10: P(5, 1)}, 10, OK, OK),  # not yet: the previous period (silent) rules
    (spec(), {9: P(5, 3)}, 10, OK, ALARM),  # the last complete period breached
    (spec(), {9: P(5, 3)}, 11, ALARM, OK),  # and the one after it did not
    (spec(), {9: P(5, 1)}, 10, ALARM, OK),
    (spec(), {}, 10, NODATA, OK),  # silence is OK by default
    # several periods: every one must breach
    (spec(periods=3), {8: P(2, 2), 9: P(2, 2), 10: P(2, 2)}, 10, OK, ALARM),
    (spec(periods=3), {7: P(2, 2), 8: P(2, 1), 9: P(2, 2)}, 10, OK, OK),
    (spec(periods=2), {9: P(2, 2)}, 10, OK, OK),  # 8 was silent: not breaching
    # missing data treated as breaching
    (spec(periods=2, missing=TreatMissing.BREACHING), {9: P(2, 2)}, 10, OK, ALARM),
    (spec(missing=TreatMissing.BREACHING), {}, 10, OK, ALARM),
    (spec(missing=TreatMissing.BREACHING), {9: P(2, 0)}, 10, ALARM, OK),  # printed, no match
    # missing data left out
    (spec(missing=TreatMissing.MISSING), {}, 10, OK, NODATA),
    (spec(missing=TreatMissing.MISSING), {9: P(0, 0)}, 10, ALARM, NODATA),
    (spec(periods=2, missing=TreatMissing.MISSING), {9: P(2, 2)}, 10, OK, OK),  # too few: stays
    (spec(periods=2, missing=TreatMissing.MISSING), {9: P(2, 2)}, 10, NODATA, NODATA),
    (spec(periods=2, missing=TreatMissing.MISSING), {9: P(2, 0)}, 10, ALARM, OK),
    # missing data ignored: the state stays
    (spec(missing=TreatMissing.IGNORE), {}, 10, ALARM, ALARM),
    (spec(missing=TreatMissing.IGNORE), {9: P(1, 0)}, 10, ALARM, OK),
]


@pytest.mark.parametrize(("alarm", "points", "current", "before", "after"), CASES)
def test_evaluate(alarm, points, current, before, after):
    assert evaluate(alarm, points, current, before).state == after


def test_a_decision_says_why():
    decision = evaluate(spec(), {10: P(3, 2)}, 10, OK)
    assert decision.reason.startswith("Threshold crossed: 1 of the last 1 datapoints")


@pytest.mark.parametrize(
    ("before", "data", "lines"),
    [
        (b"", b"a\nb\n", ["a", "b"]),
        (b"", b"a\nb", ["a"]),  # b is still open
        (b"a\nb", b"c\n", ["bc"]),  # finished by this chunk
        (b"x", b"yz", []),
        (b"old\n", b"new\r\n", ["new"]),
        (b"", b"\n", [""]),
        (b"", "caf\u00e9\n".encode(), ["caf\u00e9"]),
    ],
)
def test_complete_lines(before, data, lines):
    assert complete_lines(before, data) == lines


@pytest.mark.parametrize(
    ("pattern", "regex", "line", "matches"),
    [
        ("ERROR", False, "an ERROR here", True),
        ("ERROR", False, "an error here", False),  # case-sensitive, as CloudWatch terms are
        ("a.c", False, "abc", False),  # plain text is not a regex
        (r"took [0-9]{4,}ms", True, "took 12000ms", True),
        (r"^WARN", True, "x WARN", False),
    ],
)
def test_line_matcher(pattern, regex, line, matches):
    assert LineMatcher(pattern, regex)(line) is matches


@pytest.mark.parametrize(
    ("alarm", "sentence"),
    [
        (AlarmSpec("(", True, 1, 60), "not a valid regular expression"),
        (AlarmSpec("x", False, 0, 60), "at least 1"),
        (AlarmSpec("x", False, 1, 5), "multiple of 10s"),
        (AlarmSpec("x", False, 1, 15), "multiple of 10s"),
        (AlarmSpec("x", False, 1, 90000), "multiple of 10s"),
        (AlarmSpec("x", False, 1, 60, 101), "evaluation periods"),
        (AlarmSpec("", False, 1, 60), "pattern"),
    ],
)
def test_bad_specs_are_refused(alarm, sentence):
    with pytest.raises(ValidationError, match=sentence):
        check_spec(alarm)


def test_periods_are_aligned_to_the_epoch():
    assert [period_of(t, 60) for t in (0, 59.9, 60, 3600)] == [0, 0, 1, 60]
