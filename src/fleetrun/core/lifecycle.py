"""The invocation lifecycle as one pure function: what happened, given where it is,
decides where it goes.

    next_status(current, happening) -> Move | None

`None` means no change (a late frame, a repeated cancel, a deadline after the end):
the server writes nothing and emits no event. Every status the server writes for an
invocation after its creation comes from this table; docs/statuses.md shows it.

The happenings are the things that move invocations in a Run Command system:

| happening | from | to (detail) |
| --- | --- | --- |
| NodeOffline | Pending | Delayed (Delayed) |
| Accepted, Started | Pending, Delayed | InProgress (InProgress) |
| Refused | Pending, Delayed | Failed (BlockedByLocalPolicy, or the agent's detail) |
| Finished (with the agent's status) | Pending, Delayed, InProgress, Cancelling | that status |
| Cancel | Pending, Delayed | Cancelled |
| Cancel | InProgress | Cancelling |
| DeliveryDeadline | Pending, Delayed | TimedOut (DeliveryTimedOut) |
| Expired | InProgress | TimedOut (ExecutionTimedOut) |
| Expired | Cancelling | Cancelled |
| ErrorThreshold | Pending | Terminated (ErrorThresholdExceeded) |
| NodeDeleted | any open status | Undeliverable (NodeDeleted) |
| AgentForgot | InProgress | Failed (AgentRestarted) |
| TooLarge | Pending, Delayed | Undeliverable (TooLarge): it can never be delivered |

A terminal status never moves again: the first word wins, whether it is the agent's
result, a cancel or a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleetrun.core.statuses import TERMINAL_INVOCATION, InvocationStatus, StatusDetail

S = InvocationStatus
D = StatusDetail


class Happening(StrEnum):
    NODE_OFFLINE = "NodeOffline"  # released, but the node holds no session
    ACCEPTED = "Accepted"  # the agent acknowledged the invoke
    REFUSED = "Refused"  # the agent's local policy refused it
    STARTED = "Started"  # the agent reports it running (its ack may have been lost)
    FINISHED = "Finished"  # the agent reports a terminal status
    CANCEL = "Cancel"  # an operator (or a run command's replacement) cancelled it
    DELIVERY_DEADLINE = "DeliveryDeadline"  # not started before the command's deadline
    EXPIRED = "Expired"  # no word from the agent long past the command's expiry
    ERROR_THRESHOLD = "ErrorThreshold"  # the command's max-errors was reached first
    NODE_DELETED = "NodeDeleted"  # the node was deleted or deregistered
    AGENT_FORGOT = "AgentForgot"  # the agent came back without it: never run twice
    TOO_LARGE = "TooLarge"  # its invoke frame exceeds what the agent accepts


# What an agent may report as an invocation's end.
AGENT_RESULTS = frozenset({S.SUCCESS, S.FAILED, S.TIMED_OUT, S.CANCELLED})

OPEN = frozenset(InvocationStatus) - TERMINAL_INVOCATION
WAITING = frozenset({S.PENDING, S.DELAYED})


@dataclass(frozen=True)
class Move:
    status: InvocationStatus
    detail: str
    message: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_INVOCATION


class LifecycleError(ValueError):
    """A happening used without what it needs (a programming error, not input)."""


# (happening, from) -> the move; FINISHED and REFUSED take the agent's words.
_TABLE: dict[tuple[Happening, InvocationStatus], Move] = {
    (Happening.NODE_OFFLINE, S.PENDING): Move(S.DELAYED, D.DELAYED),
    **{(Happening.ACCEPTED, s): Move(S.IN_PROGRESS, D.IN_PROGRESS) for s in WAITING},
    **{(Happening.STARTED, s): Move(S.IN_PROGRESS, D.IN_PROGRESS) for s in WAITING},
    **{
        (Happening.CANCEL, s): Move(S.CANCELLED, D.CANCELLED, "Cancelled before it started.")
        for s in WAITING
    },
    (Happening.CANCEL, S.IN_PROGRESS): Move(S.CANCELLING, D.CANCELLING),
    **{
        (Happening.DELIVERY_DEADLINE, s): Move(
            S.TIMED_OUT,
            D.DELIVERY_TIMED_OUT,
            "Not started before the command's delivery deadline.",
        )
        for s in WAITING
    },
    (Happening.EXPIRED, S.IN_PROGRESS): Move(
        S.TIMED_OUT,
        D.EXECUTION_TIMED_OUT,
        "No result from the agent before the command expired (node offline?).",
    ),
    (Happening.EXPIRED, S.CANCELLING): Move(
        S.CANCELLED,
        D.CANCELLED,
        "The agent did not confirm the cancel before the command expired.",
    ),
    (Happening.ERROR_THRESHOLD, S.PENDING): Move(
        S.TERMINATED,
        D.ERROR_THRESHOLD_EXCEEDED,
        "Not started: the command's error threshold (max errors) was exceeded.",
    ),
    **{
        (Happening.NODE_DELETED, s): Move(
            S.UNDELIVERABLE,
            D.NODE_DELETED,
            "The node was deleted (deregistered) before this finished.",
        )
        for s in OPEN
    },
    (Happening.AGENT_FORGOT, S.IN_PROGRESS): Move(
        S.FAILED,
        D.AGENT_RESTARTED,
        "The agent restarted and no longer knows this invocation; it was not run again.",
    ),
    **{
        (Happening.TOO_LARGE, s): Move(
            S.UNDELIVERABLE,
            D.TOO_LARGE,
            "Too large to deliver: its invoke frame exceeds what an agent accepts.",
        )
        for s in WAITING
    },
}


def next_status(
    current: InvocationStatus | str,
    happening: Happening,
    *,
    result: InvocationStatus | str | None = None,
    detail: str | None = None,
    message: str | None = None,
) -> Move | None:
    """Where an invocation in `current` goes when `happening` happens, or None to stay.

    FINISHED takes the agent's `result` (one of AGENT_RESULTS) and its `detail`;
    REFUSED takes the agent's `detail` (default BlockedByLocalPolicy); `message`
    replaces the table's message where given."""
    current = InvocationStatus(current)
    if current in TERMINAL_INVOCATION:
        return None
    if happening == Happening.FINISHED:
        if result is None or InvocationStatus(result) not in AGENT_RESULTS:
            raise LifecycleError(f"FINISHED needs an agent result, not {result!r}")
        status = InvocationStatus(result)
        return Move(status, detail or status.value, message)
    if happening == Happening.REFUSED:
        if current not in WAITING:
            return None
        return Move(S.FAILED, detail or D.BLOCKED_BY_LOCAL_POLICY, message)
    move = _TABLE.get((happening, current))
    if move is None:
        return None
    if message is not None or detail is not None:
        return Move(move.status, detail or move.detail, message or move.message)
    return move


def table() -> dict[tuple[Happening, InvocationStatus], Move | None]:
    """Every (happening, status) pair and its move, for docs and tests (FINISHED shown
    with a Success result, REFUSED with the default detail)."""
    out: dict[tuple[Happening, InvocationStatus], Move | None] = {}
    for happening in Happening:
        for status in InvocationStatus:
            result = S.SUCCESS if happening == Happening.FINISHED else None
            out[(happening, status)] = next_status(status, happening, result=result)
    return out
