"""Time as a dependency: what decides a deadline asks a `Clock` for the time, so a
test can set the time instead of waiting for it.

The server takes one clock at its composition root (`create_app(settings, clock=...)`)
and hands it to what computes delivery deadlines, command expiry, activation and token
expiry, and delivery backoff; the real one is `SystemClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall-clock time, timezone-aware UTC: deadlines are stored in it."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back, for intervals measured within the process."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


__all__ = ["Clock", "SystemClock"]
