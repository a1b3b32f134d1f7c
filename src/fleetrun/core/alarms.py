"""Output alarms: metric filters over output lines, and the state they put an alarm in.

An alarm counts the output lines that match its pattern, per period of `period_s`
seconds (periods are aligned to the epoch: period k covers [k*period_s, (k+1)*period_s)).
A period with matching lines is a datapoint of that count; a period in which the nodes
in scope printed lines, none of them matching, is a datapoint of 0; a period in which
they printed nothing at all is *missing*, and `treat_missing` says what it means:

    ok         not breaching (the default: silence is no error)
    breaching  breaching
    missing    left out; with no datapoint left the alarm is INSUFFICIENT_DATA
    ignore     the alarm keeps the state it has

A datapoint breaches when its count is at least the threshold. The alarm looks at the
last `evaluation_periods` periods: ALARM when every one breaches, OK otherwise. The
period in progress counts as soon as it breaches (a count only grows, so it can be
decided early: an alarm on one ERROR a minute fires when the line arrives, not when the
minute ends); until then the window is the periods before it.

`evaluate` is the whole decision, a pure function of the alarm, its counts and the time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from fleetrun.core.errors import ValidationError

MAX_EVALUATION_PERIODS = 100
MIN_PERIOD_S = 10
MAX_PERIOD_S = 86400
MAX_PATTERN_CHARS = 1024


class AlarmState(StrEnum):
    OK = "OK"  # the last periods did not all breach
    ALARM = "ALARM"  # the last evaluation_periods periods all breached
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"  # new, or nothing to judge by


class TreatMissing(StrEnum):
    OK = "ok"  # a silent period does not breach
    BREACHING = "breaching"  # a silent period breaches
    MISSING = "missing"  # a silent period is left out
    IGNORE = "ignore"  # with a silent period in the window, the state stays


@dataclass(frozen=True)
class AlarmSpec:
    pattern: str
    regex: bool
    threshold: int
    period_s: int
    evaluation_periods: int = 1
    treat_missing: TreatMissing = TreatMissing.OK


@dataclass(frozen=True)
class Datapoint:
    """What one period saw: lines printed by the nodes in scope, and how many matched."""

    lines: int = 0
    matched: int = 0


@dataclass(frozen=True)
class Decision:
    state: AlarmState
    reason: str


def period_of(epoch_s: float, period_s: int) -> int:
    """The index of the period holding this instant."""
    return int(epoch_s // period_s)


def check_spec(spec: AlarmSpec) -> AlarmSpec:
    """The spec, or a ValidationError saying what is wrong with it."""
    if not spec.pattern or len(spec.pattern) > MAX_PATTERN_CHARS:
        raise ValidationError(
            f"The pattern must be 1-{MAX_PATTERN_CHARS} characters: give the text to match."
        )
    if spec.regex:
        try:
            re.compile(spec.pattern)
        except re.error as exc:
            raise ValidationError(
                f"The pattern {spec.pattern!r} is not a valid regular expression ({exc}): "
                "fix it, or drop --regex to match the text as it is."
            ) from exc
    if spec.threshold < 1:
        raise ValidationError("The threshold must be at least 1 matching line.")
    if not MIN_PERIOD_S <= spec.period_s <= MAX_PERIOD_S or spec.period_s % MIN_PERIOD_S:
        raise ValidationError(
            f"The period must be a multiple of {MIN_PERIOD_S}s from {MIN_PERIOD_S}s to 1d, "
            f"not {spec.period_s}s."
        )
    if not 1 <= spec.evaluation_periods <= MAX_EVALUATION_PERIODS:
        raise ValidationError(
            f"The evaluation periods must be 1-{MAX_EVALUATION_PERIODS}, "
            f"not {spec.evaluation_periods}."
        )
    return spec


class LineMatcher:
    """Whether a line matches an alarm's pattern: the text as it is (case-sensitive, as
    CloudWatch's filter terms are), or a regular expression searched in the line."""

    def __init__(self, pattern: str, regex: bool) -> None:
        self._regex = re.compile(pattern) if regex else None
        self._text = pattern

    def __call__(self, line: str) -> bool:
        if self._regex is not None:
            return self._regex.search(line) is not None
        return self._text in line


def evaluate(
    spec: AlarmSpec,
    points: Mapping[int, Datapoint],
    current_period: int,
    state: AlarmState,
) -> Decision:
    """The state the alarm should be in at `current_period`, from the datapoints of the
    periods it has (a period absent from `points` printed nothing)."""
    n = spec.evaluation_periods
    now_point = points.get(current_period)
    if now_point is not None and now_point.matched >= spec.threshold:
        window = range(current_period - n + 1, current_period + 1)
    else:
        window = range(current_period - n, current_period)
    breaching = 0
    judged = 0
    for period in window:
        point = points.get(period)
        if point is None or point.lines == 0:
            if spec.treat_missing == TreatMissing.IGNORE:
                return Decision(state, "")
            if spec.treat_missing == TreatMissing.MISSING:
                continue
            judged += 1
            breaching += spec.treat_missing == TreatMissing.BREACHING
            continue
        judged += 1
        breaching += point.matched >= spec.threshold
    unit = "period" if n == 1 else f"{n} periods"
    if judged == 0:
        return Decision(AlarmState.INSUFFICIENT_DATA, f"No output in the last {unit} to judge by.")
    if breaching == judged == n:
        return Decision(
            AlarmState.ALARM,
            f"Threshold crossed: {breaching} of the last {n} datapoints were at least "
            f"{spec.threshold} matching line(s) per {spec.period_s}s.",
        )
    if breaching == judged and judged < n:
        return Decision(state, "")  # too few datapoints to move it either way
    return Decision(
        AlarmState.OK,
        f"Threshold not crossed: {breaching} of the last {judged} datapoints were at least "
        f"{spec.threshold} matching line(s) per {spec.period_s}s.",
    )


def complete_lines(before: bytes, data: bytes) -> list[str]:
    """The lines a chunk of output completes: `before` is what the stream held just
    before the chunk (its end, at least back to the previous newline, or the whole
    stream), `data` the chunk. A line ends with its newline, so each line is counted
    once, by the chunk that ends it; a line still open is counted when it is finished."""
    end = data.rfind(b"\n")
    if end < 0:
        return []
    start = before.rfind(b"\n") + 1
    joined = before[start:] + data[: end + 1]
    return [line.rstrip("\r") for line in joined[:-1].decode("utf-8", errors="replace").split("\n")]
