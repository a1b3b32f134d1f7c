"""Output on its way to the spool: sent at once when a script is quiet, gathered when it
is chatty.

The first bytes after a quiet spell go out at once; what follows within FLUSH_S is held
and sent together when that interval ends, or as soon as MAX_BYTES have gathered. A line
printed on the node so reaches the server within FLUSH_S plus the network's time, and a
script printing thousands of short lines a second costs about 1/FLUSH_S frames per
second per stream instead of one frame per line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

FLUSH_S = 0.05
MAX_BYTES = 64 * 1024  # one frame's worth


class Timer(Protocol):
    def cancel(self) -> None: ...


class OutputBatcher:
    """Gathers one step's output per stream; `emit(stream, data)` spools it.

    `later(delay_s, callback)` schedules a flush (the event loop's `call_later`) and
    `now()` reads a monotonic clock: both given, so that tests set the time."""

    def __init__(
        self,
        emit: Callable[[str, bytes], None],
        *,
        now: Callable[[], float],
        later: Callable[[float, Callable[[], None]], Timer],
        flush_s: float = FLUSH_S,
    ) -> None:
        self._emit = emit
        self._now = now
        self._later = later
        self.flush_s = flush_s
        self._held: dict[str, bytearray] = {}
        self._last_flush = float("-inf")
        self._timer: Timer | None = None

    def add(self, stream: str, data: bytes) -> None:
        if not data:
            return
        self._held.setdefault(stream, bytearray()).extend(data)
        if len(self._held[stream]) >= MAX_BYTES:
            self.flush()
            return
        if self._timer is not None:
            return  # a flush is already due
        wait_s = self._last_flush + self.flush_s - self._now()
        if wait_s <= 0:
            self.flush()  # quiet until now: no reason to hold it
        else:
            self._timer = self._later(wait_s, self.flush)

    def flush(self) -> None:
        """Send everything held, now (also at the step's end)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_flush = self._now()
        held, self._held = self._held, {}
        for stream, data in held.items():
            if data:
                self._emit(stream, bytes(data))
