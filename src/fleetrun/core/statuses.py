"""States of invocations, steps, commands and nodes, and how they roll up.

An invocation (one command on one node) moves

    Pending ─► Delayed ─► InProgress ─► Success | Failed | TimedOut | Cancelled
       │          │            └────► Cancelling ─► Cancelled
       └──────────┴─► Terminated | TimedOut (delivery) | Cancelled | Undeliverable | AccessDenied

and every terminal status carries a detail that says why (`StatusDetail`). A command's
status and counts are never stored by hand: `summarize` derives them from the statuses
of its invocations, following the aggregation of AWS Systems Manager Run Command
(docs/statuses.md has the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class InvocationStatus(StrEnum):
    PENDING = "Pending"  # created, not yet delivered to (or accepted by) the agent
    DELAYED = "Delayed"  # released, but the node is offline: it runs when the node connects
    IN_PROGRESS = "InProgress"  # the agent accepted it and is running it
    SUCCESS = "Success"  # every step ended with exit code 0
    FAILED = "Failed"  # a step failed, or the agent refused or lost it
    TIMED_OUT = "TimedOut"  # not delivered in time, or ran past its execution timeout
    CANCELLING = "Cancelling"  # cancel sent to a running invocation, not yet confirmed
    CANCELLED = "Cancelled"  # cancelled by an operator before or while it ran
    TERMINATED = "Terminated"  # never started: the command's error threshold was exceeded
    UNDELIVERABLE = "Undeliverable"  # the node was deleted or deregistered
    ACCESS_DENIED = "AccessDenied"  # the caller may not act on this node


TERMINAL_INVOCATION = frozenset(
    {
        InvocationStatus.SUCCESS,
        InvocationStatus.FAILED,
        InvocationStatus.TIMED_OUT,
        InvocationStatus.CANCELLED,
        InvocationStatus.TERMINATED,
        InvocationStatus.UNDELIVERABLE,
        InvocationStatus.ACCESS_DENIED,
    }
)

# Terminal statuses that say nothing about the script: they neither count as errors
# nor decide whether the command succeeded (SSM: Undeliverable, Access Denied).
NOT_ATTEMPTED = frozenset({InvocationStatus.UNDELIVERABLE, InvocationStatus.ACCESS_DENIED})


class StatusDetail(StrEnum):
    """Why an invocation or a command is where it is (one CamelCase code each)."""

    PENDING = "Pending"
    DELAYED = "Delayed"
    IN_PROGRESS = "InProgress"
    SUCCESS = "Success"
    FAILED = "Failed"
    DELIVERY_TIMED_OUT = "DeliveryTimedOut"  # not started before the delivery deadline
    EXECUTION_TIMED_OUT = "ExecutionTimedOut"  # ran past its execution timeout and was killed
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    ERROR_THRESHOLD_EXCEEDED = "ErrorThresholdExceeded"  # max-errors reached before it started
    UNDELIVERABLE = "Undeliverable"
    NODE_DELETED = "NodeDeleted"  # the node was deregistered while this waited
    TOO_LARGE = "TooLarge"  # its invoke frame is over the agent channel's size limit
    ACCESS_DENIED = "AccessDenied"
    BLOCKED_BY_LOCAL_POLICY = "BlockedByLocalPolicy"  # the node's own configuration refused it
    AGENT_RESTARTED = "AgentRestarted"  # the agent restarted while it ran; never run twice
    INCOMPLETE = "Incomplete"  # command: attempted everywhere, not all succeeded, under threshold
    NO_INSTANCES_IN_TAG = "NoInstancesInTag"  # command: the targets matched no node


class StepStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    SUCCESS = "Success"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"  # a precondition did not hold, or an earlier step ended the run


TERMINAL_STEP = frozenset(
    {
        StepStatus.SUCCESS,
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.CANCELLED,
        StepStatus.SKIPPED,
    }
)


class CommandStatus(StrEnum):
    PENDING = "Pending"  # no invocation has been released yet
    IN_PROGRESS = "InProgress"  # released to at least one node, not all finished
    SUCCESS = "Success"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"


TERMINAL_COMMAND = frozenset(
    {
        CommandStatus.SUCCESS,
        CommandStatus.FAILED,
        CommandStatus.TIMED_OUT,
        CommandStatus.CANCELLED,
    }
)


class PingStatus(StrEnum):
    ONLINE = "Online"  # the agent holds a session now
    CONNECTION_LOST = "ConnectionLost"  # no session, or a session that stopped answering
    INACTIVE = "Inactive"  # deregistered


@dataclass(frozen=True, slots=True)
class CommandSummary:
    status: CommandStatus
    detail: StatusDetail
    target_count: int
    completed_count: int
    error_count: int
    delivery_timed_out_count: int
    counts: dict[str, int]  # invocations per status


def is_error(status: str, detail: str | None) -> bool:
    """Failures and execution time-outs count against max-errors; nothing else does."""
    if status == InvocationStatus.FAILED:
        return True
    return status == InvocationStatus.TIMED_OUT and detail == StatusDetail.EXECUTION_TIMED_OUT


def summarize(
    invocations: Iterable[tuple[str, str | None]],
    *,
    error_threshold: int,
) -> CommandSummary:
    """A command's status, detail and counts, from its invocations' (status, detail).

    `error_threshold` is max-errors resolved to a number of invocations: the command
    fails once more than that many invocations failed or ran out of time.
    """
    return summarize_counts(((s, d, 1) for s, d in invocations), error_threshold=error_threshold)


def summarize_counts(
    groups: Iterable[tuple[str, str | None, int]],
    *,
    error_threshold: int,
) -> CommandSummary:
    """`summarize`, from how many invocations have each (status, detail): one step per
    group, not per invocation (a command on 10,000 nodes has a handful of groups)."""
    counts: dict[str, int] = {}
    errors = exec_timeouts = delivery_timeouts = completed = 0
    total = 0
    for status, detail, n in groups:
        if n <= 0:
            continue
        total += n
        counts[status] = counts.get(status, 0) + n
        if status in TERMINAL_INVOCATION:
            completed += n
        if is_error(status, detail):
            errors += n
            if status == InvocationStatus.TIMED_OUT:
                exec_timeouts += n
        if status == InvocationStatus.TIMED_OUT and detail == StatusDetail.DELIVERY_TIMED_OUT:
            delivery_timeouts += n

    def done(status: CommandStatus, detail: StatusDetail) -> CommandSummary:
        return CommandSummary(status, detail, total, completed, errors, delivery_timeouts, counts)

    if total == 0:
        return done(CommandStatus.FAILED, StatusDetail.NO_INSTANCES_IN_TAG)
    if completed < total:
        if counts.get(InvocationStatus.CANCELLING):
            return done(CommandStatus.CANCELLING, StatusDetail.CANCELLING)
        if counts.get(InvocationStatus.PENDING) == total:
            return done(CommandStatus.PENDING, StatusDetail.PENDING)
        return done(CommandStatus.IN_PROGRESS, StatusDetail.IN_PROGRESS)
    return done(*_final(counts, errors, exec_timeouts, delivery_timeouts, error_threshold))


def _final(
    counts: dict[str, int],
    errors: int,
    exec_timeouts: int,
    delivery_timeouts: int,
    threshold: int,
) -> tuple[CommandStatus, StatusDetail]:
    """The terminal status of a command all of whose invocations are terminal."""
    if counts.get(InvocationStatus.CANCELLED):
        return CommandStatus.CANCELLED, StatusDetail.CANCELLED
    if errors > threshold:
        if exec_timeouts * 2 > errors:
            return CommandStatus.TIMED_OUT, StatusDetail.EXECUTION_TIMED_OUT
        return CommandStatus.FAILED, StatusDetail.FAILED
    attempted = {s: n for s, n in counts.items() if s not in NOT_ATTEMPTED}
    if not attempted:
        # Nothing could even be tried: say why when there is one reason.
        only = next(iter(counts)) if len(counts) == 1 else None
        detail = (
            StatusDetail.ACCESS_DENIED
            if only == InvocationStatus.ACCESS_DENIED
            else StatusDetail.UNDELIVERABLE
            if only == InvocationStatus.UNDELIVERABLE
            else StatusDetail.FAILED
        )
        return CommandStatus.FAILED, detail
    if set(attempted) == {InvocationStatus.SUCCESS}:
        return CommandStatus.SUCCESS, StatusDetail.SUCCESS
    if delivery_timeouts > threshold and not attempted.get(InvocationStatus.SUCCESS):
        return CommandStatus.TIMED_OUT, StatusDetail.DELIVERY_TIMED_OUT
    return CommandStatus.FAILED, StatusDetail.INCOMPLETE


_STEP_PRECEDENCE = (
    StepStatus.FAILED,
    StepStatus.TIMED_OUT,
    StepStatus.CANCELLED,
    StepStatus.SUCCESS,
)


def invocation_outcome(step_statuses: Iterable[str]) -> InvocationStatus:
    """The status an agent reports for an invocation, from its finished steps.

    The precedence is SSM's agent contract: Failed > TimedOut > Cancelled > Success;
    skipped steps count as success, and an invocation with no step succeeded.
    """
    seen = {StepStatus(s) for s in step_statuses}
    for status in _STEP_PRECEDENCE:
        if status in seen:
            return InvocationStatus(status.value)
    return InvocationStatus.SUCCESS
