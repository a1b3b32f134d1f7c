from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.ratecontrol import (
    Decision,
    check_concurrency,
    check_errors,
    concurrency_limit,
    error_threshold,
    plan,
)


@pytest.mark.parametrize(
    ("text", "targets", "limit"),
    [
        ("50", 1000, 50),
        ("1", 10, 1),
        ("10%", 50, 5),
        ("10%", 51, 6),
        ("1%", 3, 1),
        ("100%", 7, 7),
        ("33%", 10, 4),
        ("50", 3, 50),
    ],
)
def test_concurrency_rounds_up_and_is_at_least_one(text, targets, limit):
    assert concurrency_limit(check_concurrency(text), targets) == limit


@pytest.mark.parametrize(
    ("text", "targets", "threshold"),
    [
        ("0", 50, 0),
        ("3", 50, 3),
        ("10%", 50, 5),
        ("10%", 59, 5),
        ("0%", 9, 0),
        ("100%", 7, 7),
        ("33%", 10, 3),
    ],
)
def test_errors_round_down(text, targets, threshold):
    assert error_threshold(check_errors(text), targets) == threshold


@pytest.mark.parametrize("text", ["0", "12x", "-1", "0%", "101%", "1.5", "", "%", "5%%"])
def test_malformed_concurrency_is_refused(text):
    with pytest.raises(ValidationError, match="Max concurrency"):
        check_concurrency(text)


@pytest.mark.parametrize("text", ["12x", "-1", "101%", "1.5", "", "abc"])
def test_malformed_errors_is_refused(text):
    with pytest.raises(ValidationError, match="Max errors"):
        check_errors(text)


@pytest.mark.parametrize(
    ("in_flight", "waiting", "errors", "limit", "threshold", "expected"),
    [
        (0, 10, 0, 3, 0, Decision(3, False)),  # first release
        (3, 7, 0, 3, 0, Decision(0, False)),  # full
        (2, 7, 0, 3, 0, Decision(1, False)),  # one slot freed
        (0, 2, 0, 50, 0, Decision(2, False)),  # fewer waiting than slots
        (0, 0, 0, 3, 0, Decision(0, False)),  # nothing waiting
        (1, 5, 1, 3, 0, Decision(0, True)),  # one error over a threshold of 0
        (1, 5, 3, 3, 3, Decision(2, False)),  # at the threshold: still going
        (0, 5, 4, 3, 3, Decision(0, True)),  # past it: the rest never start
    ],
)
def test_plan(in_flight, waiting, errors, limit, threshold, expected):
    assert (
        plan(in_flight=in_flight, waiting=waiting, errors=errors, limit=limit, threshold=threshold)
        == expected
    )
