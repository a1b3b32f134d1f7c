"""The command's status is derived from its invocations (SSM's aggregation)."""

from __future__ import annotations

import collections
import itertools

import pytest

from fleetrun.core.statuses import (
    CommandStatus as C,
)
from fleetrun.core.statuses import (
    InvocationStatus as I,
)
from fleetrun.core.statuses import (
    StatusDetail as D,
)
from fleetrun.core.statuses import (
    invocation_outcome,
    summarize,
    summarize_counts,
)

OK = (I.SUCCESS, D.SUCCESS)
FAIL = (I.FAILED, D.FAILED)
EXEC_TO = (I.TIMED_OUT, D.EXECUTION_TIMED_OUT)
DELIV_TO = (I.TIMED_OUT, D.DELIVERY_TIMED_OUT)
UNDELIV = (I.UNDELIVERABLE, D.UNDELIVERABLE)
DENIED = (I.ACCESS_DENIED, D.ACCESS_DENIED)
RUNNING = (I.IN_PROGRESS, D.IN_PROGRESS)
PENDING = (I.PENDING, D.PENDING)
TERMINATED = (I.TERMINATED, D.ERROR_THRESHOLD_EXCEEDED)


@pytest.mark.parametrize(
    ("invocations", "threshold", "expected"),
    [
        ([], 0, (C.FAILED, D.NO_INSTANCES_IN_TAG)),
        ([PENDING, PENDING], 0, (C.PENDING, D.PENDING)),
        ([PENDING, RUNNING], 0, (C.IN_PROGRESS, D.IN_PROGRESS)),
        ([OK, RUNNING], 0, (C.IN_PROGRESS, D.IN_PROGRESS)),
        ([(I.DELAYED, D.DELAYED)], 0, (C.IN_PROGRESS, D.IN_PROGRESS)),
        ([OK, OK, OK], 0, (C.SUCCESS, D.SUCCESS)),
        ([OK, FAIL], 0, (C.FAILED, D.FAILED)),
        # under the threshold: attempted everywhere, not all succeeded
        ([OK, FAIL, OK], 1, (C.FAILED, D.INCOMPLETE)),
        ([EXEC_TO, EXEC_TO, OK], 1, (C.TIMED_OUT, D.EXECUTION_TIMED_OUT)),
        ([FAIL, TERMINATED, TERMINATED], 0, (C.FAILED, D.FAILED)),
        # Undeliverable and AccessDenied neither count nor decide (SSM: 4 + 1 Success -> Success)
        ([UNDELIV, UNDELIV, UNDELIV, UNDELIV, OK], 0, (C.SUCCESS, D.SUCCESS)),
        ([UNDELIV, UNDELIV], 0, (C.FAILED, D.UNDELIVERABLE)),
        ([DENIED], 0, (C.FAILED, D.ACCESS_DENIED)),
        ([DENIED, UNDELIV], 0, (C.FAILED, D.FAILED)),
        # delivery time-outs are not errors, but decide the outcome when nothing succeeded
        ([DELIV_TO, DELIV_TO], 0, (C.TIMED_OUT, D.DELIVERY_TIMED_OUT)),
        ([DELIV_TO, OK], 0, (C.FAILED, D.INCOMPLETE)),
        ([(I.CANCELLED, D.CANCELLED), OK], 0, (C.CANCELLED, D.CANCELLED)),
        ([(I.CANCELLING, D.CANCELLING), OK], 0, (C.CANCELLING, D.CANCELLING)),
    ],
)
def test_command_status_follows_its_invocations(invocations, threshold, expected):
    summary = summarize(invocations, error_threshold=threshold)
    assert (summary.status, summary.detail) == expected


@pytest.mark.parametrize("threshold", [0, 1, 2, 5])
def test_grouped_counts_summarize_as_the_invocations_do(threshold):
    everything = [OK, FAIL, EXEC_TO, DELIV_TO, UNDELIV, RUNNING, DENIED, TERMINATED]
    for size in range(1, 5):
        for picked in itertools.product(everything, repeat=size):
            grouped = collections.Counter(picked)
            groups = [(s, d, n) for (s, d), n in grouped.items()]
            groups.append((I.CANCELLED, D.CANCELLED, 0))  # a group emptied counts for nothing
            assert summarize_counts(groups, error_threshold=threshold) == summarize(
                picked, error_threshold=threshold
            )


def test_counts_follow_ssm_definitions():
    summary = summarize([OK, FAIL, EXEC_TO, DELIV_TO, UNDELIV, RUNNING], error_threshold=10)
    assert summary.target_count == 6
    assert summary.completed_count == 5
    assert summary.error_count == 2  # Failed + ExecutionTimedOut only
    assert summary.delivery_timed_out_count == 1
    assert summary.counts == {
        "Success": 1,
        "Failed": 1,
        "TimedOut": 2,
        "Undeliverable": 1,
        "InProgress": 1,
    }


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], I.SUCCESS),
        (["Success", "Skipped"], I.SUCCESS),
        (["Success", "Failed"], I.FAILED),
        (["TimedOut", "Failed"], I.FAILED),
        (["Success", "TimedOut"], I.TIMED_OUT),
        (["Cancelled", "Success"], I.CANCELLED),
    ],
)
def test_invocation_outcome_uses_agent_precedence(steps, expected):
    assert invocation_outcome(steps) == expected
