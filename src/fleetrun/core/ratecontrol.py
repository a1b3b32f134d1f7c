"""Rate control: how many invocations may run at once, how many may fail.

Both limits are written as a number or a percentage of the command's targets, as in
SSM's SendCommand: max-concurrency rounds up and is at least 1; max-errors rounds
down. Only failures and execution time-outs count as errors. Once errors exceed
the threshold nothing new starts, and every invocation that has not started ends
Terminated (ErrorThresholdExceeded); those already running finish.

fleetrun releases up to max-concurrency at once (SSM ramps up 1, 2, 4, ...; a
persistent agent channel makes the ramp only slower, not safer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fleetrun.core.errors import ValidationError

DEFAULT_MAX_CONCURRENCY = "50"
DEFAULT_MAX_ERRORS = "0"

_CONCURRENCY = re.compile(r"^(?:[1-9][0-9]{0,5}|[1-9][0-9]?%|100%)$")
_ERRORS = re.compile(r"^(?:[0-9]{1,6}|[0-9][0-9]?%|100%)$")


def check_concurrency(text: str) -> str:
    if not _CONCURRENCY.match(text):
        raise ValidationError(
            f"Max concurrency {text!r} is malformed: give a number of nodes (1 or more) or a "
            "percentage from 1% to 100%, e.g. 10 or 25%."
        )
    return text


def check_errors(text: str) -> str:
    if not _ERRORS.match(text):
        raise ValidationError(
            f"Max errors {text!r} is malformed: give a number of nodes (0 or more) or a "
            "percentage from 0% to 100%, e.g. 0, 3 or 10%."
        )
    return text


def concurrency_limit(text: str, targets: int) -> int:
    """Invocations that may be in flight at once: ceil of a percentage, at least 1."""
    if text.endswith("%"):
        return max(1, math.ceil(int(text[:-1]) * targets / 100))
    return max(1, int(text))


def error_threshold(text: str, targets: int) -> int:
    """The number of errors the command tolerates: floor of a percentage."""
    if text.endswith("%"):
        return int(text[:-1]) * targets // 100
    return int(text)


@dataclass(frozen=True, slots=True)
class Decision:
    release: int  # how many waiting invocations to release now
    terminate: bool  # end every waiting invocation as Terminated


def plan(*, in_flight: int, waiting: int, errors: int, limit: int, threshold: int) -> Decision:
    """What to do with a command's waiting (not yet released) invocations."""
    if waiting == 0:
        return Decision(0, False)
    if errors > threshold:
        return Decision(0, True)
    return Decision(max(0, min(waiting, limit - in_flight)), False)
