"""The invocation lifecycle table: every (happening, status) pair, exhaustively."""

from __future__ import annotations

import pytest

from fleetrun.core.lifecycle import (
    AGENT_RESULTS,
    Happening,
    LifecycleError,
    Move,
    next_status,
    table,
)
from fleetrun.core.statuses import TERMINAL_INVOCATION, InvocationStatus, StatusDetail

S, D, H = InvocationStatus, StatusDetail, Happening

# The whole table: (happening, from) -> (to, detail); every pair not listed stays put.
EXPECTED: dict[tuple[Happening, InvocationStatus], tuple[InvocationStatus, str]] = {
    (H.NODE_OFFLINE, S.PENDING): (S.DELAYED, D.DELAYED),
    (H.ACCEPTED, S.PENDING): (S.IN_PROGRESS, D.IN_PROGRESS),
    (H.ACCEPTED, S.DELAYED): (S.IN_PROGRESS, D.IN_PROGRESS),
    (H.STARTED, S.PENDING): (S.IN_PROGRESS, D.IN_PROGRESS),
    (H.STARTED, S.DELAYED): (S.IN_PROGRESS, D.IN_PROGRESS),
    (H.REFUSED, S.PENDING): (S.FAILED, D.BLOCKED_BY_LOCAL_POLICY),
    (H.REFUSED, S.DELAYED): (S.FAILED, D.BLOCKED_BY_LOCAL_POLICY),
    (H.FINISHED, S.PENDING): (S.SUCCESS, "Success"),
    (H.FINISHED, S.DELAYED): (S.SUCCESS, "Success"),
    (H.FINISHED, S.IN_PROGRESS): (S.SUCCESS, "Success"),
    (H.FINISHED, S.CANCELLING): (S.SUCCESS, "Success"),
    (H.CANCEL, S.PENDING): (S.CANCELLED, D.CANCELLED),
    (H.CANCEL, S.DELAYED): (S.CANCELLED, D.CANCELLED),
    (H.CANCEL, S.IN_PROGRESS): (S.CANCELLING, D.CANCELLING),
    (H.DELIVERY_DEADLINE, S.PENDING): (S.TIMED_OUT, D.DELIVERY_TIMED_OUT),
    (H.DELIVERY_DEADLINE, S.DELAYED): (S.TIMED_OUT, D.DELIVERY_TIMED_OUT),
    (H.EXPIRED, S.IN_PROGRESS): (S.TIMED_OUT, D.EXECUTION_TIMED_OUT),
    (H.EXPIRED, S.CANCELLING): (S.CANCELLED, D.CANCELLED),
    (H.ERROR_THRESHOLD, S.PENDING): (S.TERMINATED, D.ERROR_THRESHOLD_EXCEEDED),
    (H.NODE_DELETED, S.PENDING): (S.UNDELIVERABLE, D.NODE_DELETED),
    (H.NODE_DELETED, S.DELAYED): (S.UNDELIVERABLE, D.NODE_DELETED),
    (H.NODE_DELETED, S.IN_PROGRESS): (S.UNDELIVERABLE, D.NODE_DELETED),
    (H.NODE_DELETED, S.CANCELLING): (S.UNDELIVERABLE, D.NODE_DELETED),
    (H.AGENT_FORGOT, S.IN_PROGRESS): (S.FAILED, D.AGENT_RESTARTED),
    (H.TOO_LARGE, S.PENDING): (S.UNDELIVERABLE, D.TOO_LARGE),
    (H.TOO_LARGE, S.DELAYED): (S.UNDELIVERABLE, D.TOO_LARGE),
}

ALL_PAIRS = [(h, s) for h in Happening for s in InvocationStatus]


@pytest.mark.parametrize(("happening", "current"), ALL_PAIRS)
def test_every_pair_moves_as_the_table_says_or_stays(happening, current):
    result = S.SUCCESS if happening == H.FINISHED else None
    move = next_status(current, happening, result=result)
    expected = EXPECTED.get((happening, current))
    if expected is None:
        assert move is None
    else:
        assert move is not None
        assert (move.status, move.detail) == expected


@pytest.mark.parametrize("current", sorted(TERMINAL_INVOCATION))
@pytest.mark.parametrize("happening", list(Happening))
def test_a_terminal_status_never_moves_again(current, happening):
    assert next_status(current, happening, result=S.FAILED) is None


@pytest.mark.parametrize("result", sorted(AGENT_RESULTS))
def test_the_agents_result_and_detail_are_taken_as_reported(result):
    move = next_status(S.IN_PROGRESS, H.FINISHED, result=result, detail="X", message="m")
    assert move == Move(result, "X", "m")
    plain = next_status(S.IN_PROGRESS, H.FINISHED, result=result)
    assert plain is not None and plain.detail == result.value and plain.terminal


@pytest.mark.parametrize("bad", [None, S.IN_PROGRESS, S.PENDING, S.TERMINATED, "Bogus"])
def test_finished_without_an_agent_result_is_a_programming_error(bad):
    with pytest.raises((LifecycleError, ValueError)):
        next_status(S.IN_PROGRESS, H.FINISHED, result=bad)


def test_a_refusal_carries_the_agents_detail_and_reason():
    move = next_status(S.DELAYED, H.REFUSED, detail="DisabledByNode", message="run-as root refused")
    assert move == Move(S.FAILED, "DisabledByNode", "run-as root refused")


def test_the_table_lists_every_pair_once_and_agrees_with_next_status():
    whole = table()
    assert set(whole) == set(ALL_PAIRS)
    moved = {pair: (m.status, m.detail) for pair, m in whole.items() if m is not None}
    assert moved == EXPECTED


def test_every_terminal_move_explains_itself_where_the_server_decides():
    """Moves the server decides (not the agent's results) carry a sentence for the
    operator."""
    for (happening, _), move in table().items():
        if move is None or not move.terminal or happening in (H.FINISHED, H.REFUSED):
            continue
        assert move.message and move.message.endswith("."), happening
