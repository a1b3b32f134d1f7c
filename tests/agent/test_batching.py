"""The agent's output batching, on a clock the test sets: a quiet script's line goes out
at once, a chatty script's lines are gathered for at most FLUSH_S, a full frame's worth
goes out at once, and nothing is lost or reordered within a stream."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetrun.agent.batching import FLUSH_S, MAX_BYTES, OutputBatcher


class Loop:
    """A clock and its scheduled callbacks; `run_until(t)` moves the time and runs them."""

    def __init__(self) -> None:
        self.t = 0.0
        self.due: list[list] = []  # [at, callback, cancelled]

    def later(self, delay_s: float, callback: Callable[[], None]):
        entry = [self.t + delay_s, callback, False]
        self.due.append(entry)

        class Handle:
            def cancel(self) -> None:
                entry[2] = True

        return Handle()

    def run_until(self, t: float) -> None:
        for entry in sorted(self.due, key=lambda e: e[0]):
            if entry[0] <= t and not entry[2]:
                self.t = max(self.t, entry[0])
                entry[2] = True
                entry[1]()
        self.t = t


@pytest.fixture
def setup():
    loop = Loop()
    sent: list[tuple[float, str, bytes]] = []
    batcher = OutputBatcher(
        lambda stream, data: sent.append((loop.t, stream, data)),
        now=lambda: loop.t,
        later=loop.later,
    )
    return loop, sent, batcher


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        # (time, stream, data) -> (time sent, stream, data)
        ([(0.0, "stdout", b"a\n")], [(0.0, "stdout", b"a\n")]),
        (
            [(0.0, "stdout", b"a\n"), (0.01, "stdout", b"b\n"), (0.02, "stdout", b"c\n")],
            [(0.0, "stdout", b"a\n"), (FLUSH_S, "stdout", b"b\nc\n")],
        ),
        (
            [(0.0, "stdout", b"a\n"), (0.01, "stderr", b"e\n"), (1.0, "stdout", b"z\n")],
            [(0.0, "stdout", b"a\n"), (FLUSH_S, "stderr", b"e\n"), (1.0, "stdout", b"z\n")],
        ),
    ],
)
def test_quiet_output_goes_at_once_and_chatty_output_within_the_interval(setup, writes, expected):
    loop, sent, batcher = setup
    for at, stream, data in writes:
        loop.run_until(at)
        batcher.add(stream, data)
    loop.run_until(10.0)
    assert sent == expected


def test_a_full_frame_goes_at_once_and_the_end_of_a_step_flushes_the_rest(setup):
    loop, sent, batcher = setup
    batcher.add("stdout", b"x")
    loop.run_until(0.001)
    batcher.add("stdout", b"y" * MAX_BYTES)
    assert sent[-1] == (0.001, "stdout", b"y" * MAX_BYTES)
    batcher.add("stdout", b"tail")
    batcher.flush()
    assert sent[-1] == (0.001, "stdout", b"tail")
    loop.run_until(10.0)
    assert b"".join(d for _, _, d in sent) == b"x" + b"y" * MAX_BYTES + b"tail"
